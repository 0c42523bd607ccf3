"""The seed document's claims, each turned into a measurement with a verdict.

The seed's numbers and layer names were illustrative; a claim here is judged by what it
*asserts about the mechanism*, measured on our models, with the rule and thresholds written next
to the verdict. Every rule below takes plain measured numbers and returns one of
``supported`` / ``partly`` / ``not supported``, so the rules are unit-tested on synthetic
measurements and the report can show exactly why a verdict was reached.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

SUPPORTED, PARTLY, NOT_SUPPORTED = "supported", "partly", "not supported"


@dataclass(frozen=True)
class Claim:
    claim: str
    measured: str
    rule: str
    verdict: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def word_scores(scores: Mapping[str, float], expected: Mapping[str, float]) -> Claim:
    """Signs of the seed's word/feature scores, and whether its top unit is our top unit."""
    signs = {u: (scores[u] > 0) == (v > 0) for u, v in expected.items() if u in scores}
    seed_top = max(expected, key=lambda u: abs(expected[u]))
    our_top = max(scores, key=lambda u: abs(scores[u]))
    all_signs = bool(signs) and all(signs.values())
    if all_signs and seed_top == our_top:
        verdict = SUPPORTED
    elif sum(signs.values()) >= max(1, len(signs) - 1):
        verdict = PARTLY
    else:
        verdict = NOT_SUPPORTED
    wrong = [u for u, ok in signs.items() if not ok]
    measured = ", ".join(f"{u} {scores[u]:+.3f}" for u in expected if u in scores)
    measured += f"; top unit here: {our_top}" + (f"; sign differs for: {', '.join(wrong)}" if wrong else "")
    return Claim("input-path scores: " + ", ".join(f"{u} {v:+.1f}" for u, v in expected.items()), measured,
                 "supported if every sign matches and the seed's largest unit is ours too; partly if all but one sign matches",
                 verdict)


def head_tracks_words(enrichment: Sequence[Mapping[str, Any]], ablation: Mapping[str, float], top_k: int = 5,
                      min_enrichment: float = 2.0, specificity: float = 1.5) -> Claim:
    """'A head tracks positive sentiment words': attention enrichment plus causal importance."""
    ranked = sorted(ablation, key=lambda c: -ablation[c])[:top_k]
    tracking = [r for r in enrichment
                if r["pos_enrichment"] >= min_enrichment and r["pos_enrichment"] >= specificity * r["neg_enrichment"]]
    best = max(enrichment, key=lambda r: r["pos_enrichment"])
    causal_tracking = [r for r in tracking if r["component"] in ranked]
    if causal_tracking:
        verdict, head = SUPPORTED, causal_tracking[0]
    elif tracking:
        verdict, head = PARTLY, tracking[0]
    else:
        verdict, head = NOT_SUPPORTED, best
    measured = (f"most positive-word-enriched head {best['component']}: {best['pos_enrichment']:.2f}x chance "
                f"(negative words {best['neg_enrichment']:.2f}x); named head {head['component']} ablation effect "
                f"{ablation.get(head['component'], float('nan')):+.3f}; top heads by ablation: {', '.join(ranked)}")
    return Claim("one attention head tracks positive sentiment words", measured,
                 f"supported if a head's attention from the reading token (an encoder's first token, a decoder's last) to positive-lexicon words is >= {min_enrichment}x "
                 f"chance and >= {specificity}x its enrichment for negative words, and it is among the top {top_k} heads by "
                 "ablation effect; partly if such a head exists but is not causally important", verdict)


def ablation_removes_word(before: float, after: float, head: str, word: str, gone: float = 0.2, weakened: float = 0.7) -> Claim:
    """'Ablating that head makes the model stop reading the word as positive'."""
    ratio = after / before if abs(before) > 1e-9 else float("nan")
    verdict = SUPPORTED if ratio <= gone else PARTLY if ratio <= weakened else NOT_SUPPORTED
    return Claim(f"ablating the head makes the model stop reading '{word}' as positive",
                 f"effect of deleting '{word}' (occlusion, logit diff): {before:+.3f} with all heads, {after:+.3f} with {head} "
                 f"mean-ablated (ratio {ratio:.2f})",
                 f"supported if the word's effect falls to <= {gone:.0%} of itself, partly if <= {weakened:.0%}", verdict)


def cluster_amplifies(cluster: str, delta_good: float, delta_bad: float, ablation_effect: float, spread: float) -> Claim:
    """'A late-layer cluster amplifies "surprisingly good" and suppresses "slow pacing"'.

    ``delta_good`` is the cluster's activation with the positive phrase minus without it,
    ``delta_bad`` the same for the negative phrase, ``spread`` the cluster's activation standard
    deviation over the dataset, ``ablation_effect`` the drop in the positive logit difference
    when the cluster is mean-ablated.
    """
    amplifies = delta_good >= 0.5 * spread
    suppressed = delta_bad <= -0.5 * spread
    causal = ablation_effect > 0
    checks = [amplifies, suppressed, causal]
    verdict = SUPPORTED if all(checks) else PARTLY if (amplifies or suppressed) and causal else NOT_SUPPORTED
    return Claim("a late-layer neuron cluster amplifies 'surprisingly good' and suppresses 'slow pacing'",
                 f"{cluster}: activation change {delta_good:+.3f} from 'surprisingly good', {delta_bad:+.3f} from 'slow pacing' "
                 f"(dataset sd {spread:.3f}); mean-ablating it changes the positive logit diff by {-ablation_effect:+.3f}",
                 "supported if the phrase 'surprisingly good' raises the cluster by >= 0.5 sd, 'slow pacing' lowers it by >= 0.5 sd "
                 "and ablating the cluster lowers the positive logit diff; partly if one of the two phrase effects holds", verdict)


def cluster_encodes(what: str, layer: str, r2: float, strong: float = 0.5, weak: float = 0.25) -> Claim:
    verdict = SUPPORTED if r2 >= strong else PARTLY if r2 >= weak else NOT_SUPPORTED
    return Claim(f"a neuron cluster encodes {what}", f"best cluster: {layer}, R² = {r2:.3f}",
                 f"supported if a cluster's mean activation has R² >= {strong} against the feature(s), partly if >= {weak}", verdict)


def pathway_removes_separation(before: float, after: float, control_mean: float, control_sd: float,
                               neurons: Sequence[str], gone: float = 0.2, weakened: float = 0.6) -> Claim:
    ratio = after / before if abs(before) > 1e-9 else float("nan")
    beats_control = after < control_mean - 2 * control_sd
    verdict = (SUPPORTED if ratio <= gone and beats_control else
               PARTLY if ratio <= weakened and beats_control else NOT_SUPPORTED)
    return Claim("ablating the credit-score pathway makes 720 and 600 indistinguishable",
                 f"approval gap 720 vs 600: {before:.3f} before, {after:.3f} after ablating {', '.join(neurons)}; "
                 f"random neurons of the same layer: {control_mean:.3f} ± {control_sd:.3f}",
                 f"supported if the gap falls to <= {gone:.0%} of itself and below the random control (mean - 2 sd); "
                 f"partly if <= {weakened:.0%} and below the control", verdict)


def patching_flips(layers: Sequence[Mapping[str, Any]], sparse: float = 0.25) -> Claim:
    sparse_flips = [x for x in layers if x["neurons_to_flip"] and x["neurons_to_flip"] <= sparse * x["width"]]
    whole = [x for x in layers if x["whole_layer_flips"]]
    verdict = SUPPORTED if sparse_flips else PARTLY if whole else NOT_SUPPORTED
    parts = "; ".join(f"L{x['layer']}: {x['neurons_to_flip'] or 'no'} of {x['width']}" for x in layers)
    return Claim("patching activations from a rejected applicant flips the decision",
                 f"whole hidden layer patched: flips at {len(whole)} of {len(layers)} layers; neurons needed per layer: {parts}",
                 f"supported if patching at most {sparse:.0%} of one layer's neurons flips the decision; partly if only "
                 "whole-layer patching flips it", verdict)


def subject_is_top_word(seed_top: str, subject: str, top_share: float, above_share: float, n: int,
                        strong: float = 0.8) -> Claim:
    """Input path on agreement: is the subject noun the top word, above the attractor?"""
    verdict = (SUPPORTED if seed_top == subject and top_share >= strong else
               PARTLY if above_share >= strong else NOT_SUPPORTED)
    return Claim("input path: the subject noun is the word that decides the verb, above the attractor",
                 f"seed sentence: top word by SHAP is '{seed_top}' (subject '{subject}'); over {n} held-out sentences "
                 f"with an opposite-number attractor (occlusion): subject is the top word in {top_share:.0%}, scores "
                 f"above the attractor in {above_share:.0%}",
                 f"supported if the seed's top word is the subject and the subject is the top word in >= {strong:.0%} of the "
                 f"held-out sentences; partly if it scores above the attractor in >= {strong:.0%}", verdict)


def head_carries_agreement(heads: Sequence[Mapping[str, Any]], top_k: int = 3, min_enrichment: float = 2.0,
                           min_share: float = 0.25) -> tuple[Claim, str]:
    """'Attention head 3.7 carries the subject-verb agreement signal' (the seed's LLM example).

    ``heads`` has one row per head with ``component``, ``subject_enrichment`` (attention from the
    verb position to the subject noun over its uniform share), ``ablation`` (mean drop of the
    correct verb's logit difference when mean-ablated) and ``patching_share`` (mean share of the
    clean-vs-flipped gap moved by patching the head alone from the number-flipped sentence).
    Returns the claim and the head it names.
    """
    by_ablation = [r["component"] for r in sorted(heads, key=lambda r: -r["ablation"])[:top_k]]
    by_patching = [r["component"] for r in sorted(heads, key=lambda r: -r["patching_share"])[:top_k]]

    def checks(row: Mapping[str, Any]) -> tuple[bool, bool, bool]:
        return (row["subject_enrichment"] >= min_enrichment,
                row["component"] in by_ablation and row["component"] in by_patching,
                row["patching_share"] >= min_share)

    def strength(row: Mapping[str, Any]) -> tuple[int, int, float]:
        i, ii, iii = checks(row)
        return (int(i and ii and iii), int(i) * (int(ii) + int(iii)), row["patching_share"])

    best = max(heads, key=strength)
    i, ii, iii = checks(best)
    verdict = SUPPORTED if i and ii and iii else PARTLY if i and (ii or iii) else NOT_SUPPORTED
    name = best["component"]
    measured = (f"{name}: attention from the verb position to the subject noun {best['subject_enrichment']:.2f}x its uniform "
                f"share; mean-ablation drop {best['ablation']:+.3f} (logit diff); patching it alone from the number-flipped "
                f"sentence moves {best['patching_share']:.0%} of the gap; top {top_k} heads by ablation: "
                f"{', '.join(by_ablation)}; by patching: {', '.join(by_patching)}")
    return Claim("one attention head carries the subject-verb agreement signal", measured,
                 f"supported if a head (i) attends from the verb position to the subject noun >= {min_enrichment}x its uniform "
                 f"share over held-out sentences, (ii) is among the top {top_k} heads both by mean ablation and by patching "
                 f"from the number-flipped sentence, and (iii) patching that head alone from the flipped sentence moves "
                 f">= {min_share:.0%} of the clean-vs-flipped logit-difference gap toward the other verb; partly if (i) and "
                 "one of (ii)/(iii) hold", verdict), name


def late_components_write_decision(parts: Sequence[Mapping[str, Any]], logit_diff: float, n_layers: int,
                                   embeddings: float = 0.0, constant: float = 0.0, majority: float = 0.5) -> Claim:
    """'The decision is written directly by late components' (direct logit attribution).

    ``parts`` has one row per head and MLP with ``component``, ``layer`` and ``dla`` (its direct
    share of the logit difference, final norm frozen); the shares plus ``embeddings`` and
    ``constant`` add up to ``logit_diff``. The decision is the model's own: the sign of
    ``logit_diff`` (target against the strongest other label). Late = the later half of the layers.
    """
    late_from = n_layers // 2
    late = sum(float(r["dla"]) for r in parts if r["layer"] >= late_from)
    early = sum(float(r["dla"]) for r in parts if r["layer"] < late_from)
    top = max(parts, key=lambda r: abs(float(r["dla"])))
    share = late / logit_diff if logit_diff != 0 else float("nan")
    writes = bool(share >= majority)
    top_late = top["layer"] >= late_from and float(top["dla"]) * logit_diff > 0
    verdict = SUPPORTED if writes and top_late else PARTLY if writes or top_late else NOT_SUPPORTED
    side = "the target" if logit_diff > 0 else "the other label"
    measured = (f"logit diff {logit_diff:+.3f} (the model decides for {side}) = {_layers(late_from, n_layers - 1)} "
                f"{late:+.3f} + {_layers(0, late_from - 1)} {early:+.3f} + embeddings {embeddings:+.3f} + norm/head constant "
                f"{constant:+.3f}; late share of the decision {share:.0%}; largest direct share: {top['component']} "
                f"{float(top['dla']):+.3f}")
    return Claim("the decision is written directly by late components (direct logit attribution)", measured,
                 f"supported if the heads and MLPs of the later half of the layers directly write >= {majority:.0%} of the "
                 "logit difference in the direction the model decides (final norm's scale frozen at the clean run) and "
                 "the component with the largest direct share is late and pushes the same way; partly if one of the two "
                 "holds", verdict)


def _layers(first: int, last: int) -> str:
    return f"layer {first}" if first == last else f"layers {first}-{last}"


def top_heads_act_directly(rows: Sequence[Mapping[str, Any]], named: str | None = None) -> Claim:
    """'The heads that matter act on the output themselves', from direct versus total effects.

    ``rows`` are :func:`twopath.mechanistic.lens.verdicts` rows for the top heads by total effect
    (activation patching from the contrast input): ``component``, ``total``, ``direct`` (shares
    of the clean-vs-contrast logit-difference gap) and ``verdict``. ``named`` is the head another
    claim names (the sentiment-tracking head), reported with its own verdict when it is a top head.
    """
    live = [r for r in rows if r["verdict"] != "no effect"]
    direct = [r for r in live if r["verdict"] == "acts directly"]
    if not live:
        verdict = NOT_SUPPORTED
    elif live[0]["verdict"] == "acts directly" and 2 * len(direct) >= len(live):
        verdict = SUPPORTED
    else:
        verdict = PARTLY if direct else NOT_SUPPORTED
    measured = "; ".join(f"{r['component']}: total {r['total']:.2f}, direct {r['direct']:.2f} ({r['verdict']})" for r in rows)
    if named is not None:
        own = next((r for r in rows if r["component"] == named), None)
        measured += (f"; the sentiment-tracking head {named}: {own['verdict']}" if own is not None
                     else f"; the sentiment-tracking head {named} is not among these top heads by total effect")
    return Claim("the heads that matter most write the decision directly, not through later components", measured or "no heads",
                 "over the top heads by total effect (activation patching from the contrast, share of the gap): supported "
                 "if the strongest acts directly (direct effect with every later component frozen >= half its total, "
                 "same sign) and at least half of those with an effect (|total| >= 0.05) do; partly if at least one "
                 "does; not supported if none does", verdict)


def residual_claims(result: Any, named: str | None = None, k: int = 5) -> list[Claim]:
    """The two residual-stream claims above, measured from an example's direct logit attribution
    and direct-effect / activation-patching results (those that were run)."""
    from twopath.mechanistic.lens import verdicts

    methods = {loc.method: loc for loc in result.localizations}
    found: list[Claim] = []
    dla = methods.get("direct_logit_attribution")
    if dla is not None:
        parts = [{"component": str(c), "layer": c.layer, "dla": float(v)} for c, v in zip(dla.components, dla.effects, strict=True)]
        n_layers = 1 + max(c.layer for c in dla.components)
        found.append(late_components_write_decision(parts, float(dla.clean), n_layers, float(dla.meta["embeddings"]),
                                                    float(dla.meta["constant"])))
    direct, total = methods.get("direct_effect"), methods.get("activation_patching")
    if direct is not None and total is not None:
        heads = [i for i, c in enumerate(total.components) if c.kind == "head"]
        if heads:
            from twopath.types import Localization

            only = Localization(total.example_id, total.method, total.target, total.metric,
                                tuple(total.components[i] for i in heads), total.effects[heads], total.clean,
                                total.corrupted, total.meta)
            found.append(top_heads_act_directly(verdicts(direct, only, k=k), named))
    return found
