"""Render the fault family's tables in docs/localization.md from the JSON of
``semheat localize --family DIR --json`` and ``semheat monitor --family DIR --json`` (files in
docs/family_figures/), so that no figure there is typed by hand:

    python docs/render_family_tables.py
"""

import json
from pathlib import Path

HERE = Path(__file__).parent
DOC = HERE / "localization.md"
BEGIN, END = "<!-- family tables: begin (generated) -->", "<!-- family tables: end -->"
COLS = [("role", "role"), ("n", "known faults"), ("probe_accuracy", "vs probe (consensus)"),
        ("probe_paper_accuracy", "vs probe (paper)"), ("accuracy", "vs construction"),
        ("coverage", "decided"), ("decided_accuracy", "decided right"),
        ("confidence_ece", "ECE"), ("responsible_concept_rank", "tied concept rank"),
        ("responsible_concept_rank_aligned", "rank, aligned reading (before)")]


def fmt(v):
    if v is None:
        return "–"
    return f"{v:.3f}" if isinstance(v, float) else str(v)


def render_monitor(rep: dict, name: str) -> list[str]:
    """The table of ``semheat monitor --family DIR --json``."""
    out = [f"From `{name}` (`semheat monitor --family {rep['family']} --json`; "
           "misclassification, AUROC):\n",
           "| bundle | role | mistakes | concept monitor | heatmap monitor (paper) | MSP | "
           "monitor ≥ MSP |", "|---" * 7 + "|"]
    for name, e in rep["bundles"].items():
        d = e["detectors"]
        role = e["role"] if e["counted"] else "barely takes (< 30)"
        out.append(f"| {name} | {role} | {e['n_positive']} | {fmt(d['concept']['auroc'])} | "
                   f"{fmt(d['heatmap']['auroc'])} | {fmt(d['msp']['auroc'])} | "
                   f"{'yes' if e['monitor_at_least_msp'] else '**no**'} |")
    for key, m in rep["means"].items():
        out.append(f"| **mean, {key.replace('_', ' ')}** ({m['bundles']}) | | | "
                   f"{fmt(m.get('concept_auroc'))} | {fmt(m.get('heatmap_auroc'))} | "
                   f"{fmt(m.get('msp_auroc'))} | {m['monitor_at_least_msp']} of "
                   f"{m['bundles']} |")
    return out + [""]


def render() -> str:
    out = []
    for path in sorted((HERE / "family_figures").glob("*.json")):
        rep = json.loads(path.read_text())
        if rep.get("task") == "misclassification":
            out += render_monitor(rep, path.name)
            continue
        out.append(f"From `{path.name}` (`semheat localize --family {rep['family']} --json`"
                   + ("; round 1, measured before the ranking of responsible concepts changed"
                      if path.name == "family.json" else "; round 2, held out") + "):\n")
        out.append("| bundle | " + " | ".join(h for _, h in COLS) + " |")
        out.append("|---" * (len(COLS) + 1) + "|")
        for name, e in rep["bundles"].items():
            role = e["role"] if e.get("counted", True) else "barely takes (< 30)"
            out.append(f"| {name} | " + " | ".join(
                role if k == "role" else fmt(e.get(k)) for k, _ in COLS) + " |")
        for key, m in rep["means"].items():
            out.append(f"| **mean, {key.replace('_', ' ')}** ({m['bundles']}) | | | " + " | ".join(
                fmt(m.get(k)) for k, _ in COLS[2:8]) + f" | rank 1: {m.get('ties_with_rank_1', '–')}, "
                f"top 3: {m.get('ties_in_top_3', '–')} | rank 1: "
                f"{m.get('ties_with_rank_1_aligned', '–')} |")
        out.append("")
    return "\n".join(out)


def main():
    text = DOC.read_text()
    block = f"{BEGIN}\n{render()}\n{END}"
    if BEGIN in text:
        text = text[:text.index(BEGIN)] + block + text[text.index(END) + len(END):]
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    DOC.write_text(text)


if __name__ == "__main__":
    main()
