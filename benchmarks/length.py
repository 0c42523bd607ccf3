"""Length benchmark: ``twopath explain`` on longer and longer inputs, with the goals of issue 18.

Each run is one ``twopath explain`` process (default methods, ``-q``, JSON report) on a
deterministic text: held-out Rotten Tomatoes reviews of the fixed test split, concatenated in
order and cut to 6, 12, 24 and 48 words and to 256 tokens of the model's tokenizer; and the same
48 words on the reference decoder (``sentiment-gpt2``), as its sequence classifier (``48d``) and
prompted (``48p``: its transformer opened as a causal LM, ``--prompt "Review: {text}\nSentiment:"
--labels " negative, positive"``; its language-model head is the tied input embedding, never
trained to answer, so the explanation means nothing, but the cost is that of a prompted
decision: the template's tokens, the reading position). For each run it prints the wall time,
the peak resident memory of that process (its own ``VmHWM``), the report's cost table summed per
phase (input path, internal path; the rest of the wall is loading, comparisons and checks),
the growth of the wall time against the growth of the number of words, and the goal beside
each figure. Goals are printed, never asserted.

The model is the cached reference MiniLM (``twopath.seed.zoo.sentiment_model``). This script
never trains one: when the cache does not hold it yet, it runs the pretrained MiniLM encoder with
a random two-label head (the same architecture, so the same cost; the explanations mean
nothing) and says so. ``python benchmarks/length.py --lengths 6,12`` runs a subset; ``--model
DIR`` benchmarks another sequence classifier.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

#: (wall seconds, peak RSS in GB) per input, from issue 18; None: no goal stated
GOALS: dict[str, tuple[float | None, float | None]] = {
    "6 words": (None, None), "12 words": (25, 1.0), "24 words": (None, None), "48 words": (80, 1.2),
    "256 tokens": (360, 2.0), "48 words, decoder": (None, None), "48 words, decoder, prompted": (120, 1.5),
}
LENGTHS = ("6", "12", "24", "48", "256t", "48d", "48p")
PROMPT = ["--prompt", "Review: {text}\nSentiment:", "--labels", " negative, positive"]


def review_text(n_words: int | None = None, n_tokens: int | None = None, tokenizer: Any = None) -> str:
    """Held-out reviews in their fixed order, cut to ``n_words`` words or to the most whole words
    whose tokens (with the tokenizer's special tokens) fit ``n_tokens``."""
    from twopath.datasets import sentiment

    _, test = sentiment.split(seed=0)
    words: list[str] = []
    for text in test["text"]:
        words += str(text).split()
        if len(words) >= (n_words or 4 * (n_tokens or 0)):
            break
    if n_words is not None:
        return " ".join(words[:n_words])
    keep = len(words)
    while keep and len(tokenizer(" ".join(words[:keep]))["input_ids"]) > n_tokens:
        keep -= 1
    return " ".join(words[:keep])


def cached_minilm() -> Path | None:
    """The reference MiniLM's folder if the cache holds it (never trains)."""
    from twopath.seed import zoo

    return zoo.cached("sentiment-minilm", zoo.sentiment_model_key(0))


def cached_decoder() -> Path | None:
    from twopath.seed import decoder, zoo

    return zoo.cached(decoder.NAME, decoder.decoder_key(0))


def as_causal_lm(decoder: Path, directory: Path) -> Path:
    """The reference decoder's transformer under a causal-LM head (the tied input embedding), saved
    in ``directory`` with its tokenizer: what ``--prompt`` opens. Its answers mean nothing (the
    head never learned to answer), its cost is that of a prompted decision."""
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    classifier = AutoModelForSequenceClassification.from_pretrained(decoder)
    config = classifier.config
    config.architectures = None
    lm = AutoModelForCausalLM.from_config(config)
    lm.base_model.load_state_dict(classifier.base_model.state_dict())
    lm.tie_weights()
    lm.save_pretrained(directory)
    AutoTokenizer.from_pretrained(decoder).save_pretrained(directory)
    return directory


def stand_in_minilm(directory: Path) -> Path:
    """The pretrained MiniLM with a random, seeded two-label head (same cost as the reference)."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer
    from transformers.utils import logging as hf_logging

    from twopath.seed.zoo import minilm_path

    hf_logging.set_verbosity_error()
    torch.manual_seed(0)
    labels = {0: "negative", 1: "positive"}
    model = AutoModelForSequenceClassification.from_pretrained(
        minilm_path(), num_labels=2, attn_implementation="eager", id2label=labels,
        label2id={v: k for k, v in labels.items()})
    model.save_pretrained(directory)
    AutoTokenizer.from_pretrained(minilm_path()).save_pretrained(directory)
    return directory


#: runs ``twopath.cli`` and, at exit, writes the process's own peak resident memory (VmHWM, kB)
#: to ``$TWOPATH_BENCH_PEAK``. ``wait4``'s ``ru_maxrss`` is no measure of it: Linux folds the
#: resident size of the forked copy of this benchmark process into the child's figure at exec.
_LAUNCH = """
import atexit, os, runpy, sys
def _peak():
    try:
        with open("/proc/self/status") as status:
            kb = next(int(line.split()[1]) for line in status if line.startswith("VmHWM"))
    except (OSError, StopIteration):
        return
    with open(os.environ["TWOPATH_BENCH_PEAK"], "w") as out:
        out.write(str(kb))
atexit.register(_peak)
sys.argv = ["twopath", *sys.argv[1:]]
runpy.run_module("twopath.cli", run_name="__main__")
"""


def run_explain(model: Path, text: str, out: Path, extra: list[str] | None = None) -> dict[str, Any]:
    """One ``twopath explain`` process: wall seconds, its peak RSS and the report's cost table."""
    peak_file = out.parent / f"{out.name}.peak"
    peak_file.unlink(missing_ok=True)
    command = [sys.executable, "-c", _LAUNCH, "explain", "--model", str(model), "--text", text,
               "--out", str(out), "--format", "json,md", "-q", *(extra or [])]
    start = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                               env={**os.environ, "TWOPATH_BENCH_PEAK": str(peak_file)})
    _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - start
    # the process's own high-water mark (Linux); else wait4's, which can be this process's
    rss_gb = (int(peak_file.read_text()) if peak_file.exists() else usage.ru_maxrss) / 2**20
    error = process.stderr.read().decode() if process.stderr else ""
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        return {"wall": wall, "rss_gb": rss_gb, "error": error.strip().splitlines()[-1:] or ["?"]}
    doc = json.loads((out / "report.json").read_text())
    example = doc["examples"][0]
    steps = step_seconds((out / "report.md").read_text())  # wall-clock figures are kept out of report.json
    phases = {path: sum(v for k, v in steps.items() if k.startswith(f"{path} path")) for path in ("input", "internal")}
    budgets = {a["method"]: a["meta"]["budget"] for a in example["attributions"] if "budget" in a["meta"]}
    return {"wall": wall, "rss_gb": rss_gb, "phases": phases, "budgets": budgets,
            "n_words": len(example["attributions"][0]["units"]), "f1": f1_seconds((out / "report.md").read_text())}


def f1_seconds(markdown: str) -> float:
    """F1 from the report's cost table (its ``reference`` row; milliseconds to 3 decimals of a second)."""
    for line in markdown.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if cells and cells[0] == "reference" and len(cells) >= 5:
            return float(cells[4])
    return float("nan")


def step_seconds(markdown: str) -> dict[str, float]:
    """The report's "Where the time went" table: step -> wall seconds."""
    section = markdown.split("### Where the time went", 1)[1].split("\n#", 1)[0]
    steps = {}
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 3 and cells[0] not in ("step", "---"):
            try:
                steps[cells[0]] = float(cells[1])
            except ValueError:
                continue
    return steps


def _goal(value: float, goal: float | None, unit: str, digits: int = 1) -> str:
    if goal is None:
        return f"{value:7.{digits}f}{unit}  (goal -)"
    mark = "ok" if value <= goal else "OVER"
    return f"{value:7.{digits}f}{unit}  (goal <= {goal:g}{unit}, {mark})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lengths", default=",".join(LENGTHS),
                        help="comma-separated: 6, 12, 24, 48 (words), 256t (tokens), 48d / 48p (48 words on the decoder, "
                             "as a classifier / prompted)")
    parser.add_argument("--model", type=Path, default=None, help="a sequence classifier folder (default: the reference MiniLM)")
    args = parser.parse_args()
    wanted = [x.strip() for x in args.lengths.split(",") if x.strip()]
    work = Path(tempfile.mkdtemp(prefix="twopath-length-"))
    model = args.model or cached_minilm()
    if model is None:
        print("note: the reference MiniLM is not cached yet (twopath reproduce sentiment builds it); timing the "
              "pretrained MiniLM with a random head instead: same architecture and cost, meaningless explanations")
        model = stand_in_minilm(work / "minilm-random-head")
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model)
    print(f"model: {model}")
    print(f"{'input':<28} {'words':>5} {'wall':>30} {'peak RSS':>30} {'input s':>8} {'internal s':>10} {'F1 ms':>6}  growth")
    previous: tuple[int, float] | None = None
    for length in wanted:
        target, extra = model, None
        if length.endswith(("d", "p")):
            decoder = cached_decoder()
            if decoder is None:
                print(f"{'48 words, decoder':<28} skipped: the reference decoder is not cached (twopath reproduce sentiment-gpt2)")
                continue
            prompted = length.endswith("p")
            target, name, text = (decoder, f"{length[:-1]} words, decoder" + (", prompted" if prompted else ""),
                                  review_text(int(length[:-1])))
            extra = PROMPT if prompted else None
            if prompted:
                target = as_causal_lm(decoder, work / "decoder-causal-lm")
        elif length.endswith("t"):
            name, text = f"{length[:-1]} tokens", review_text(n_tokens=int(length[:-1]), tokenizer=tokenizer)
        else:
            name, text = f"{length} words", review_text(int(length))
        run = run_explain(target, text, work / f"out-{length}", extra)
        goal_wall, goal_rss = GOALS.get(name, (None, None))
        if "error" in run:
            print(f"{name:<28} failed after {run['wall']:.0f} s: {run['error'][0]}")
            continue
        growth = ""
        if previous is not None and not length.endswith(("d", "p")):
            growth = f"x{run['wall'] / previous[1]:.2f} wall for x{run['n_words'] / previous[0]:.2f} words"
        if not length.endswith(("d", "p")):
            previous = (run["n_words"], run["wall"])
        print(f"{name:<28} {run['n_words']:>5} {_goal(run['wall'], goal_wall, ' s'):>30} {_goal(run['rss_gb'], goal_rss, ' GB', 2):>30} "
              f"{run['phases']['input']:>8.1f} {run['phases']['internal']:>10.1f} {1000 * run['f1']:>6.1f}  {growth}")
        capped = [f"{m}: {b['setting']} {b['used']} of {b['full']} ({b['error_name']} {b['error']:.3g})"
                  for m, b in run["budgets"].items() if b.get("capped")]
        if capped:
            print(f"{'':<28} capped budgets: " + "; ".join(capped))
    print("goal: from 24 words on, wall time grows no faster than the number of words (growth ratio <= word ratio)")


if __name__ == "__main__":
    main()
