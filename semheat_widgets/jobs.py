"""The options of each long job, typed, with their defaults, checked once before any work.

- :class:`AnalysisJob` — ``semheat analyze`` and :func:`.workflows.job.run_analysis`;
- :class:`ToyWorldJob` — ``semheat toy build`` and :func:`.zoo.build.build_toy_world`;
- :class:`FamilyJob` — ``semheat toy family`` and :func:`.zoo.family_build.build_family`.

The defaults live in these fields and nowhere else: the command line reads them from here (and
shows them in ``--help``), the workflows start from here. :meth:`checked` returns the job with
every value normalised, or raises one :class:`~.errors.SemheatError` line that names the
*option* (``image_size must be at most 4096, got 5000``) and carries it as ``exc.option``
(:func:`mentioning` for a line that names several, ``exc.options``); the command line alone
turns option names into its flags (``--image-size``).

A leaf module: nothing heavy is imported here, so building the command line stays instant.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import MISSING, dataclass, fields, replace
from numbers import Real
from pathlib import Path

from .arguments import as_int, as_path
from .errors import SemheatError, SemheatTypeError, SemheatValueError

IMAGE_SIZE = 224  # images are decoded at this size (shorter side, centre crop) by default
MAX_IMAGE_SIZE = 4096  # an image size beyond this is refused (a typo, not a wish)
ENGINES = ("local", "ray")


@contextmanager
def naming(option: str):
    """Errors raised inside the block are about ``option``: tag them (``exc.option``)."""
    try:
        yield
    except SemheatError as exc:
        if getattr(exc, "option", None) is None:
            exc.option = option
        raise


def option_error(option: str, message: str, kind=SemheatValueError) -> SemheatError:
    """``option message`` as one error line tagged with the option."""
    exc = kind(f"{option} {message}")
    exc.option = option
    return exc


def mentioning(message: str, *options: str, kind=SemheatError) -> SemheatError:
    """One error line that mentions ``options`` by name (a switch as ``name=True``), tagged
    with them: from Python it reads ``... pass overwrite=True ...``, and the command line shows
    each as its flag (``... pass --force ...``)."""
    exc = kind(message)
    exc.option, exc.options = options[0], options
    return exc


def _count(job, name: str, minimum: int, maximum: int | None = None, optional=False):
    value = getattr(job, name)
    if value is None and optional:
        return None
    with naming(name):
        return as_int(value, name, minimum=minimum, maximum=maximum)


def _one_of(job, name: str, choices) -> str:
    value = getattr(job, name)
    if value not in choices:
        raise option_error(name, f"must be one of {', '.join(map(str, choices))}, got {value!r}")
    return value


def _monitor(job) -> str:
    from .engine.detect.names import MONITORS

    return _one_of(job, "monitor", MONITORS)


def job_of(job_type, job, options: dict, who: str):
    """The checked job a function was given: ``job`` (a ``job_type``, with ``options``
    overriding its fields) or ``options`` alone as keywords; an unknown or missing option is
    one line naming ``who``."""
    if job is None:
        try:
            job = job_type(**options)
        except TypeError as exc:
            raise SemheatTypeError(f"{who}: {exc}") from None
    elif not isinstance(job, job_type):
        raise SemheatTypeError(f"{who} takes a {job_type.__name__}, got {type(job).__name__}")
    elif options:
        try:
            job = replace(job, **options)
        except TypeError as exc:
            raise SemheatTypeError(f"{who}: {exc}") from None
    return job.checked()


def defaults(job_type) -> dict:
    """Every option of ``job_type`` that has a default, with it."""
    return {f.name: f.default for f in fields(job_type) if f.default is not MISSING}


@dataclass(frozen=True)
class AnalysisJob:
    """A classifier analysed on a dataset on disk into a bundle (``semheat analyze``).

    ``data`` is ``rival10:DIR`` or ``folder:DIR``; ``vlm`` any VLM id of the engine's registry
    (``open_clip:ARCH:TAG``, ``toy``); ``classifier`` ``resnet18`` (fine-tuned on the train
    split for ``train_epochs``) or ``resnet18:CKPT``. ``reference_fraction`` of the train split
    is held out as the reference set. ``engine="ray"`` runs the forward passes on Ray
    (``ray_address``: an existing cluster or ``None`` for a local one; ``ray_actors`` model
    replicas; finished shards of ``ray_shard_size`` inputs kept for resuming).
    """

    data: str
    vlm: str
    out: Path
    classifier: str = "resnet18"
    train_epochs: int = 0
    attributes_csv: str | None = None
    concepts: tuple[str, ...] | None = None
    reference_fraction: float = 0.2
    attack_limit: int | None = 500
    image_size: int = IMAGE_SIZE
    batch_size: int = 64
    num_workers: int = 2
    device: str | None = None
    monitor: str = "concept"
    engine: str = "local"
    ray_address: str | None = None
    ray_actors: int | None = None
    ray_shard_size: int = 512
    overwrite: bool = False
    progress: bool = True

    def checked(self) -> "AnalysisJob":
        """This job with every value checked and normalised (cheap: no model is opened)."""
        for name in ("data", "vlm", "classifier"):
            if not isinstance(getattr(self, name), str) or not getattr(self, name):
                raise option_error(name, f"must be a non-empty string, got "
                                         f"{getattr(self, name)!r}", SemheatTypeError)
        with naming("out"):
            out = Path(as_path(self.out, "out"))
        frac = self.reference_fraction
        if isinstance(frac, bool) or not isinstance(frac, Real) or not 0 < frac < 1:
            raise option_error("reference_fraction", f"must be in (0, 1), got {frac!r}")
        name, _, ckpt = self.classifier.partition(":")
        if name != "resnet18":
            raise option_error("classifier", f"must be resnet18 or resnet18:CKPT, got "
                                             f"{self.classifier!r}")
        if ckpt and not Path(ckpt).is_file():
            raise option_error("classifier", f"checkpoint not found: {ckpt}")
        from .engine.models.registry import check_vlm_id

        try:
            vlm = check_vlm_id(self.vlm)
        except SemheatError as exc:
            raise option_error("vlm", f"must be open_clip:ARCH:TAG or toy ({exc})") from None
        concepts = self.concepts
        if concepts is not None:
            if isinstance(concepts, str) or not all(isinstance(c, str) for c in concepts):
                raise option_error("concepts", "must be a list of concept names",
                                   SemheatTypeError)
            concepts = tuple(concepts)
        return replace(
            self, out=out, vlm=vlm, concepts=concepts, reference_fraction=float(frac),
            train_epochs=_count(self, "train_epochs", 0),
            attack_limit=_count(self, "attack_limit", 0, optional=True),
            image_size=_count(self, "image_size", 1, MAX_IMAGE_SIZE),
            batch_size=_count(self, "batch_size", 1), num_workers=_count(self, "num_workers", 0),
            ray_actors=_count(self, "ray_actors", 1, optional=True),
            ray_shard_size=_count(self, "ray_shard_size", 1),
            engine=_one_of(self, "engine", ENGINES), monitor=_monitor(self))


@dataclass(frozen=True)
class ToyWorldJob:
    """The toy world built into a directory (``semheat toy build``): ``n_reference`` held-out
    inputs per training distribution, ``n_natural`` natural test inputs, ``n_shift`` test inputs
    where the encoder fault's tie breaks, ``attack_limit`` natural inputs attacked with FGSM and
    PGD (0: none; ``None``: all), the monitor whose flags the bundles report and how the heatmap
    monitor compares concept profiles."""

    n_reference: int = 2400
    n_natural: int = 2400
    n_shift: int = 600
    attack_limit: int | None = 600
    similarity: str = "cosine"
    monitor: str = "concept"

    def checked(self) -> "ToyWorldJob":
        return replace(self, n_reference=_count(self, "n_reference", 20),
                       n_natural=_count(self, "n_natural", 20),
                       n_shift=_count(self, "n_shift", 0),
                       attack_limit=_count(self, "attack_limit", 0, optional=True),
                       similarity=_one_of(self, "similarity", ("cosine", "euclidean")),
                       monitor=_monitor(self))

    def settings(self) -> dict:
        """What a toy world records in ``world.json`` (a partly built world is completed only
        with the same settings)."""
        return {f.name: getattr(self, f.name) for f in fields(self)}


FAMILY_ROUNDS = (1, 2)  # the fault family's rounds (see zoo.family)


@dataclass(frozen=True)
class FamilyJob:
    """The fault family built into a directory (``semheat toy family``): the ``ties`` to build
    (names such as ``wet-ship``; ``None``: every tie of ``round`` 1 or 2 — round 2 holds out
    new ties and makes round 1's development), each tie's classifier
    trained on ``n_train`` images for ``epochs`` (then cached); every bundle analysed with
    ``n_reference`` reference inputs and ``n_natural`` natural test inputs, a tie's also with
    ``n_shift`` inputs where its tie breaks."""

    ties: tuple[str, ...] | None = None
    round: int = 1  # 1: the declared family and its roles; 2: the ties held out in round 2
    n_reference: int = 2000
    n_natural: int = 1500
    n_shift: int = 900
    n_train: int = 4000  # about half a minute per tie on 2 cores
    epochs: int = 3

    def checked(self) -> "FamilyJob":
        ties = self.ties
        if ties is not None:
            if isinstance(ties, str) or not all(isinstance(t, str) and t for t in ties):
                raise option_error("ties", "must be a list of tie names such as wet-ship",
                                   SemheatTypeError)
            ties = tuple(dict.fromkeys(ties))  # each tie once, in the order given
        return replace(self, ties=ties, round=_one_of(self, "round", FAMILY_ROUNDS),
                       n_reference=_count(self, "n_reference", 20),
                       n_natural=_count(self, "n_natural", 20),
                       n_shift=_count(self, "n_shift", 1),
                       n_train=_count(self, "n_train", 10), epochs=_count(self, "epochs", 1))

    def sizes(self) -> dict:
        """The inputs every bundle is analysed on (recorded in ``family.json``)."""
        return {"n_reference": self.n_reference, "n_natural": self.n_natural,
                "n_shift": self.n_shift}

    def training(self) -> dict:
        """The tie classifiers' recipe (part of their cache key)."""
        return {"n_train": self.n_train, "epochs": self.epochs}
