"""Regenerate ``english_words.txt.gz`` from the ``wordfreq`` package (build time only):

    pip install wordfreq && python -m semheat_widgets.data.vocab.make_english

The 10,000 most frequent lowercase alphabetic English words of three letters or more, function
words left out. wordfreq's data is CC BY-SA 4.0 (see the package's README for its sources).
"""

from __future__ import annotations

import gzip
import io

from ...safe_io import atomic_write
from . import ENGLISH_FILE

N_WORDS = 10_000
FUNCTION_WORDS = set("""the and for that you this was are have with not but what all were they
when your can there been has will more one would their which she him her its our about who
out had them some could then than into only other also any may very just how these those over
such even most after where why here much should did does doing being because each both own
same few again further once off upon while yet until although though whether either neither
nor per via etc yes yeah okay hey ever every many him his hers ours yours theirs myself
yourself himself herself itself ourselves themselves whom whose whatever whoever whichever
shall might must cannot can't don't won't isn't aren't wasn't weren't hasn't haven't hadn't
doesn't didn't couldn't wouldn't shouldn't let's i'm you're he's she's it's we're they're
i've you've we've they've i'd you'd he'd she'd we'd they'd i'll you'll he'll she'll we'll
they'll from onto within without among amongst against between through during before above
below under around across behind beyond toward towards""".split())


def main() -> None:
    from wordfreq import top_n_list

    words = []
    for w in top_n_list("en", 60_000):
        if len(w) >= 3 and w.isascii() and w.isalpha() and w.islower() and \
                w not in FUNCTION_WORDS:
            words.append(w)
        if len(words) == N_WORDS:
            break
    buf = io.BytesIO()
    with gzip.GzipFile(fileobj=buf, mode="wb", mtime=0) as f:
        f.write(("\n".join(words) + "\n").encode("utf-8"))
    atomic_write(ENGLISH_FILE, buf.getvalue())
    print(f"{len(words)} words -> {ENGLISH_FILE}")


if __name__ == "__main__":
    main()
