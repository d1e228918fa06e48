"""The comparison report: figures across seeds, as JSON, Markdown and PNG plots.

Per sampler, over seeds (mean and standard error):
- mean return and CVaR_0.5/0.7/0.9 of per-task returns on the evaluation grid;
- the regret tail: CVaR_0.9 of (return - best return known for the task), where
  the best known is the highest any run of the comparison got on that task;
- the same tail out of distribution;
- CVaR_0.9 minus ERM's, paired by seed, and the seeds it won;
- the share of DRM's environment steps it needed to reach DRM's final CVaR_0.9
  on the learning curve (mean curve over seeds);
- speed apart from robustness: the share of ERM's steps it needed to reach ERM's
  final CVaR_0.9 on the learning curve, and where ERM's curve flattened (from
  which point on it stays within two standard errors of its final value). A
  sampler that gets there sooner but ends no better than ERM is faster, not more
  robust.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from edgeloop.sims.risk import cvar

ALPHAS = (0.5, 0.7, 0.9)


def _mean_se(values: list[float]) -> dict[str, float]:
    v = np.asarray([x for x in values if not math.isnan(x)], dtype=np.float64)
    if v.size == 0:
        return {"mean": math.nan, "se": math.nan, "n": 0}
    se = float(v.std(ddof=1) / math.sqrt(v.size)) if v.size > 1 else math.nan
    return {"mean": float(v.mean()), "se": se, "n": int(v.size)}


def build_report(config: dict[str, Any], results: list[dict[str, Any]]) -> dict[str, Any]:
    """Aggregate job summaries (from :func:`~edgeloop.sims.compare.run_job`)."""
    samplers = list(dict.fromkeys(r["sampler"] for r in results))
    best = {
        part: np.max([r[part]["returns"] for r in results], axis=0) for part in ("in_range", "ood")
    }
    per_run: dict[str, dict[int, dict[str, float]]] = {s: {} for s in samplers}
    for r in results:
        returns = np.asarray(r["in_range"]["returns"])
        ood = np.asarray(r["ood"]["returns"])
        figures = {"mean": float(returns.mean())}
        figures.update({f"cvar_{a}": cvar(returns, a) for a in ALPHAS})
        figures["regret_cvar_0.9"] = cvar(returns - best["in_range"], 0.9)
        figures["ood_mean"] = float(ood.mean())
        figures["ood_cvar_0.9"] = cvar(ood, 0.9)
        figures["ood_regret_cvar_0.9"] = cvar(ood - best["ood"], 0.9)
        figures["steps"] = r["history"]["steps"][-1]
        figures["seconds"] = r["history"]["seconds"]
        per_run[r["sampler"]][r["seed"]] = figures
    table = {}
    for s in samplers:
        runs = per_run[s]
        row = {k: _mean_se([f[k] for f in runs.values()]) for k in next(iter(runs.values()))}
        if "erm" in per_run and s != "erm":
            paired = [
                runs[seed]["cvar_0.9"] - per_run["erm"][seed]["cvar_0.9"]
                for seed in runs
                if seed in per_run["erm"]
            ]
            row["cvar_0.9_minus_erm"] = _mean_se(paired)
            row["cvar_0.9_minus_erm"]["wins"] = int(sum(d > 0 for d in paired))
        table[s] = row
    curves = {s: _mean_curve([r for r in results if r["sampler"] == s]) for s in samplers}
    for reference in ("drm", "erm"):
        if reference in curves and curves[reference]["steps"]:
            target = curves[reference]["cvar_0.9"][-1]
            budget = curves[reference]["steps"][-1]
            for s in samplers:
                reached = _steps_to(curves[s], target)
                table[s][f"share_of_{reference}_steps_to_{reference}_final_cvar_0.9"] = (
                    reached / budget if reached is not None else None
                )
    erm_flat_at = _flat_from(curves["erm"]) if "erm" in curves else None
    correlations = {
        s: _mean_series([r["history"]["correlations"] for r in results if r["sampler"] == s])
        for s in samplers
    }
    from edgeloop.sims.task_space import load_task_space

    return {
        "config": config,
        "parameters": load_task_space(config["task_space"]).names,
        "samplers": samplers,
        "table": table,
        "runs": {s: {str(seed): f for seed, f in per_run[s].items()} for s in samplers},
        "curves": curves,
        "erm_flat_at": erm_flat_at,
        "training_core_hours": sum(r["history"]["seconds"] for r in results) / 3600,
        "correlations": {s: c for s, c in correlations.items() if c["mean"]},
        "grid": {
            "tasks": results[0]["in_range"]["tasks"],
            "best_known": best["in_range"].tolist(),
            "mean_returns": {
                s: np.mean(
                    [r["in_range"]["returns"] for r in results if r["sampler"] == s], axis=0
                ).tolist()
                for s in samplers
            },
        },
    }


def _steps_to(curve: dict[str, list[float]], target: float) -> float | None:
    """Steps at the first curve point whose CVaR_0.9 reaches ``target``; None if none."""
    for step, value in zip(curve["steps"], curve["cvar_0.9"], strict=True):
        if value >= target:
            return step
    return None


def _flat_from(curve: dict[str, list[float]]) -> float | None:
    """Steps of the first curve point from which every later one stays within two
    standard errors of the final CVaR_0.9 (None without a curve or standard errors)."""
    values, errors = curve["cvar_0.9"], curve["cvar_0.9_se"]
    if not values or any(math.isnan(e) for e in errors):
        return None
    final = values[-1]
    flat = len(values) - 1
    while flat > 0 and abs(values[flat - 1] - final) <= 2 * max(errors[flat - 1], errors[-1]):
        flat -= 1
    return curve["steps"][flat]


def _mean_curve(runs: list[dict[str, Any]]) -> dict[str, list[float]]:
    """Learning curves averaged point by point over seeds (the k-th point of each)."""
    curves = [r["history"]["curve"] for r in runs if r["history"]["curve"]]
    n = min((len(c) for c in curves), default=0)
    out: dict[str, list[float]] = {"steps": [], "mean": [], "cvar_0.9": [], "cvar_0.9_se": []}
    for k in range(n):
        out["steps"].append(float(np.mean([c[k]["steps"] for c in curves])))
        out["mean"].append(float(np.mean([c[k]["mean"] for c in curves])))
        tail = _mean_se([c[k]["cvar_0.9"] for c in curves])
        out["cvar_0.9"].append(tail["mean"])
        out["cvar_0.9_se"].append(tail["se"])
    return out


def _mean_series(series: list[list[float]]) -> dict[str, list[float]]:
    n = min((len(s) for s in series), default=0)
    stacked = np.asarray([s[:n] for s in series], dtype=np.float64).reshape(len(series), n)
    with np.errstate(all="ignore"):
        mean = np.nanmean(stacked, axis=0) if n else np.empty(0)
    return {"mean": [float(x) for x in mean]}


def _cell(figure: dict[str, float]) -> str:
    if figure["n"] == 0:
        return "-"
    se = "" if math.isnan(figure["se"]) else f" ± {figure['se']:.0f}"
    return f"{figure['mean']:.0f}{se}"


COLUMNS = (
    ("mean", "mean"),
    ("cvar_0.5", "CVaR_0.5"),
    ("cvar_0.7", "CVaR_0.7"),
    ("cvar_0.9", "CVaR_0.9"),
    ("regret_cvar_0.9", "regret CVaR_0.9"),
    ("ood_cvar_0.9", "OOD CVaR_0.9"),
)


def table_rows(report: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    """The results table as text cells (for rich and Markdown alike)."""
    header = [
        "sampler",
        *(label for _, label in COLUMNS),
        "CVaR_0.9 - ERM (wins)",
        "steps to ERM",
        "steps to DRM",
    ]
    rows = []
    for s in report["samplers"]:
        row = report["table"][s]
        diff = row.get("cvar_0.9_minus_erm")
        n = row["cvar_0.9"]["n"]
        rows.append(
            [
                s,
                *(_cell(row[key]) for key, _ in COLUMNS),
                f"{_cell(diff)} ({diff['wins']}/{diff['n']})" if diff else "-",
                _share(row.get("share_of_erm_steps_to_erm_final_cvar_0.9", "absent")),
                _share(row.get("share_of_drm_steps_to_drm_final_cvar_0.9", "absent")),
            ]
        )
        rows[-1][0] = f"{s} ({n} seeds)"
    return header, rows


def _share(share: float | str | None) -> str:
    if share == "absent":
        return "-"
    return "not reached" if share is None else f"{share:.0%}"


def write_report(report: dict[str, Any], out: str | Path, command: str) -> list[Path]:
    """Write report.json, report.md and the PNG plots into ``out``; return the paths."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.json").write_text(json.dumps(report, indent=1, allow_nan=True))
    header, rows = table_rows(report)
    cfg = report["config"]
    lines = [
        f"# Sampler comparison on {cfg['task_space']}",
        "",
        f"Regenerate: `{command}`",
        "",
        f"{len(cfg['seeds'])} seeds, {cfg['total_steps']:,} environment steps per run "
        "(DRM/GDRM evaluation steps included), evaluated on a "
        f"{cfg['grid']}-per-axis grid with {cfg['episodes']} episodes per task. "
        "Figures are mean ± standard error across seeds; returns are higher-is-better, "
        "so a CVaR closer to zero is a better tail. Regret is the return minus the best "
        "any run got on the task. 'steps to ERM' ('steps to DRM') is the share of ERM's "
        "(DRM's) steps a sampler needed to reach ERM's (DRM's) final CVaR_0.9 on the "
        "learning curve (coarse grid): a sampler that gets to ERM's tail sooner but ends "
        "no better than ERM is faster, not more robust. "
        + (
            f"ERM's CVaR_0.9 curve flattened (stayed within two standard errors of its "
            f"final value) from {report['erm_flat_at']:,.0f} steps on."
            if report.get("erm_flat_at") is not None
            else "Where ERM's curve flattened is unknown (one seed, or no curve)."
        )
        + f" Training took {report['training_core_hours']:.2f} core-hours (each run on one "
        "core; evaluation not counted).",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
        *("| " + " | ".join(r) + " |" for r in rows),
        "",
        "![learning curves](learning_curves.png)",
        "![returns over the task grid](heatmap.png)",
    ]
    if report["correlations"]:
        lines.append("![risk learner correlation](correlation.png)")
    (out / "report.md").write_text("\n".join(lines) + "\n")
    return [out / "report.json", out / "report.md", *_plots(report, out)]


def _plots(report: dict[str, Any], out: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = []
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for s in report["samplers"]:
        c = report["curves"][s]
        if not c["steps"]:
            continue
        steps = np.asarray(c["steps"])
        axes[0].plot(steps, c["mean"], marker=".", label=s)
        tail, se = np.asarray(c["cvar_0.9"]), np.nan_to_num(np.asarray(c["cvar_0.9_se"]))
        axes[1].plot(steps, tail, marker=".", label=s)
        axes[1].fill_between(steps, tail - se, tail + se, alpha=0.2)
    for ax, title in zip(axes, ("mean return", "CVaR_0.9 of return (± s.e.)"), strict=True):
        ax.set_xlabel("environment steps")
        ax.set_title(title)
        ax.grid(alpha=0.3)
    axes[0].legend()
    fig.suptitle(f"learning curves on {report['config']['task_space']} (mean over seeds)")
    fig.tight_layout()
    paths.append(out / "learning_curves.png")
    fig.savefig(paths[-1], dpi=110)
    plt.close(fig)

    paths.append(_heatmaps(report, out / "heatmap.png", plt))

    if report["correlations"]:
        fig, ax = plt.subplots(figsize=(6, 4))
        for s, c in report["correlations"].items():
            ax.plot(np.arange(1, len(c["mean"]) + 1), c["mean"], label=s)
        ax.axhline(0, color="grey", lw=0.8)
        ax.set_xlabel("iteration")
        ax.set_ylabel("Pearson r, predicted vs realised risk")
        ax.set_title("risk learner (mean over seeds)")
        ax.legend()
        fig.tight_layout()
        paths.append(out / "correlation.png")
        fig.savefig(paths[-1], dpi=110)
        plt.close(fig)
    return paths


def _heatmaps(report: dict[str, Any], path: Path, plt: Any) -> Path:
    """Mean return per grid task and sampler: an image for 2+ parameters (averaged over
    the third and later), a line for one."""
    tasks = np.asarray(report["grid"]["tasks"])
    samplers = report["samplers"]
    grids = {s: np.asarray(report["grid"]["mean_returns"][s]) for s in samplers}
    dim = tasks.shape[1]
    if dim == 1:
        fig, ax = plt.subplots(figsize=(6, 4), layout="constrained")
        for s in samplers:
            ax.plot(tasks[:, 0], grids[s], marker=".", label=s)
        ax.set_xlabel(report["parameters"][0])
        ax.set_ylabel("mean return")
        ax.legend()
    else:
        axes_values = [np.unique(tasks[:, j]) for j in range(dim)]
        shape = tuple(len(v) for v in axes_values)
        low = min(g.min() for g in grids.values())
        high = max(g.max() for g in grids.values())
        fig, axes = plt.subplots(
            1, len(samplers), figsize=(3.2 * len(samplers) + 1.5, 3.6), layout="constrained"
        )
        axes = np.atleast_1d(axes)
        for ax, s in zip(axes, samplers, strict=True):
            cube = grids[s].reshape(shape)
            image = cube.mean(axis=tuple(range(2, dim))) if dim > 2 else cube
            shown = ax.imshow(
                image.T,
                origin="lower",
                aspect="auto",
                vmin=low,
                vmax=high,
                extent=(
                    axes_values[0][0],
                    axes_values[0][-1],
                    axes_values[1][0],
                    axes_values[1][-1],
                ),
            )
            ax.set_title(s)
            ax.set_xlabel(report["parameters"][0])
        rest = f" (mean over {', '.join(report['parameters'][2:])})" if dim > 2 else ""
        axes[0].set_ylabel(report["parameters"][1] + rest)
        fig.colorbar(shown, ax=list(axes), label="mean return")
    fig.suptitle(f"return over the {report['config']['task_space']} grid (mean over seeds)")
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
