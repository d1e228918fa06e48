"""``edgeloop export``, ``precheck`` and ``warmup``: models on their way to a board."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from rich.table import Table
from rich.text import Text

from edgeloop.cli._common import add_json, check_writable, err, out, whole_number, write_text
from edgeloop.runtime.errors import UsageError

_STATUS_STYLE = {"pass": "green", "warn": "yellow", "fail": "bold red", "info": "cyan"}


def register(commands: Any) -> None:
    export = commands.add_parser(
        "export",
        help="export a torch model or a trained run to an ONNX bundle checked against a profile",
        description="Export a torch.nn.Module, or the policy of a run from edgeloop train, to a "
        "bundle folder (model.onnx + manifest.json) at an opset the target profile's TensorRT "
        "accepts, and check ONNX Runtime against torch on the sample inputs and random "
        "batches. A run's bundle takes the raw observation 'obs' and the physical task 'task' "
        "and returns 'action': the task normalisation and the action clamp are in the graph. "
        "Modules in the current folder import as with python -m. Needs the 'train' extra.",
        epilog="examples: edgeloop export runs/pendulum-mpts --profile jetson-orin-nano-8gb "
        "-o bundle; edgeloop export mypkg.policies:make_policy --input obs=1x3 "
        "--output action --profile jetson-orin-nano-8gb -o policy_bundle",
    )
    export.add_argument(
        "factory",
        metavar="MODULE:FACTORY|RUN",
        help="import path of a torch.nn.Module or of a function returning one, or a run folder",
    )
    export.add_argument(
        "--input",
        action="append",
        metavar="NAME=SHAPE",
        help="a model input and its example shape, e.g. obs=1x3 (repeatable; not for a run)",
    )
    export.add_argument(
        "--output",
        action="append",
        metavar="NAME",
        help="a model output name (repeatable, in the model's order; not for a run)",
    )
    export.add_argument(
        "-o", "--out", type=Path, required=True, metavar="DIR", help="bundle folder to create"
    )
    export.add_argument("--profile", metavar="NAME", help="target hardware profile name or file")
    export.add_argument(
        "--opset", type=whole_number(7), help="opset (default: the profile's limit, at most 18)"
    )
    export.add_argument(
        "--checkpoint",
        type=Path,
        metavar="FILE",
        help="a state_dict saved with torch.save, loaded (weights only) first",
    )
    export.add_argument(
        "--tolerance",
        type=float,
        default=1e-4,
        help="largest torch/ONNX Runtime difference allowed (default 1e-4)",
    )
    export.add_argument(
        "--fp16",
        action="store_true",
        help="also write an fp16 variant (fp32 inputs and outputs), checked for parity too",
    )
    export.add_argument(
        "--int8",
        action="store_true",
        help="also write an int8 variant (ONNX Runtime static quantization, QDQ, symmetric: "
        "what TensorRT takes), calibrated on --calibrate and checked on a held-out fifth",
    )
    export.add_argument(
        "--calibrate",
        type=Path,
        metavar="DATA",
        help="real inputs for --int8: a .npy/.npz file (examples stacked), a folder of them, "
        "or an edgeloop recording (.mcap, with --calibrate-topic)",
    )
    export.add_argument(
        "--calibrate-topic",
        metavar="/NODE/PORT",
        help="the recording's topic that feeds the model's input",
    )
    export.add_argument(
        "--static-batch",
        action="store_true",
        help="keep the example batch size instead of a dynamic one",
    )
    export.add_argument("--overwrite", action="store_true", help="replace an existing folder")
    export.set_defaults(handler=export_command)

    precheck = commands.add_parser(
        "precheck",
        help="check an ONNX model or bundle against a hardware profile",
        description="Check a model against a profile before it reaches the board: ONNX checker "
        "and shape inference, opset against the profile's TensorRT, every op against that "
        "TensorRT's ONNX parser, dynamic dimensions, memory against the budget, compute, and "
        "latency on this host. Exits 1 if a check fails (with --strict, also on warnings).",
    )
    precheck.add_argument("model", type=Path, help=".onnx file or bundle folder")
    precheck.add_argument(
        "--profile", required=True, metavar="NAME", help="hardware profile name or file"
    )
    add_json(precheck)
    precheck.add_argument("--strict", action="store_true", help="fail on warnings too")
    precheck.set_defaults(handler=precheck_command)

    quantize = commands.add_parser(
        "quantize",
        help="add an int8 variant to a bundle, calibrated on real inputs",
        description="Add model_int8.onnx to a bundle: ONNX Runtime static quantization in QDQ "
        "format with symmetric activations and weights (what TensorRT takes), calibrated on "
        "real inputs, compared with fp32 on a held-out fifth of them and timed on one CPU "
        "thread; the manifest records both, and a model node runs it with variant: int8. "
        "Needs the 'train' extra (onnx).",
        epilog="example: edgeloop quantize policy_bundle --calibrate run.mcap "
        "--calibrate-topic /sensor/obs",
    )
    quantize.add_argument("bundle", type=Path, help="a bundle folder from edgeloop export")
    quantize.add_argument(
        "--calibrate",
        type=Path,
        required=True,
        metavar="DATA",
        help="real inputs: a .npy/.npz file (examples stacked), a folder of them, or an "
        "edgeloop recording (.mcap, with --calibrate-topic)",
    )
    quantize.add_argument(
        "--calibrate-topic", metavar="/NODE/PORT", help="the recording's topic of the model input"
    )
    quantize.set_defaults(handler=quantize_command)

    warmup = commands.add_parser(
        "warmup",
        help="build a model's sessions (and TensorRT engines) ahead of time",
        description="Build the ONNX Runtime session for a model or bundle, or for every "
        "onnx.model node of a graph, with a profile's execution providers, run it, and keep "
        "what can be cached (TensorRT engines and timing caches go to the profile's "
        "trt_engine_cache_path and trt_timing_cache_path). On a Jetson the first engine build "
        "takes minutes; do it here (or in a service's ExecStartPre) rather than at the first "
        "loop start. Prints a table: the provider that runs each model, how its nodes were "
        "placed, the build time and the latency.",
        epilog="examples: edgeloop warmup bundle --profile jetson-orin-nx-16gb; "
        "edgeloop warmup loop.yaml",
    )
    warmup.add_argument(
        "model",
        type=Path,
        help=".onnx file or bundle folder, or a graph (.yaml): every onnx.model node in it",
    )
    warmup.add_argument(
        "--profile",
        metavar="NAME",
        help="hardware profile name or file (its providers and options are used); needed "
        "for a model, a graph's own otherwise",
    )
    warmup.add_argument("--variant", metavar="NAME", help="a bundle's other model, e.g. fp16")
    warmup.add_argument(
        "--runs",
        type=whole_number(0),
        default=20,
        metavar="N",
        help="inferences after the first, timed (default 20)",
    )
    warmup.set_defaults(handler=warmup_command)


def export_command(args: argparse.Namespace) -> int:
    is_run = Path(args.factory).is_dir()
    if ":" not in args.factory and not is_run:
        raise UsageError(
            f"{args.factory} is neither a run folder nor MODULE:FACTORY",
            fix="check the path of the run, or name a factory as package.module:function",
        )
    if is_run:
        from edgeloop.sims.policy_export import export_run

        if args.input or args.output or args.checkpoint:
            raise UsageError(
                f"{args.factory} is a run folder: its inputs, outputs and weights come from "
                "the run",
                fix="drop --input, --output and --checkpoint",
            )
        result = export_run(args.factory, args.out, profile=args.profile, overwrite=args.overwrite)
    else:
        from edgeloop.exporters.model_source import load_factory, sample_inputs
        from edgeloop.exporters.onnx_export import export_bundle

        if not args.input or not args.output:
            raise UsageError(
                f"exporting {args.factory} needs --input NAME=SHAPE and --output NAME",
                fix="name the model's inputs with example shapes, and its outputs",
            )
        module = load_factory(args.factory, checkpoint=args.checkpoint)
        names, samples = sample_inputs(args.input)
        result = export_bundle(
            module,
            samples,
            args.out,
            input_names=names,
            output_names=args.output,
            profile=args.profile,
            opset=args.opset,
            dynamic_batch=not args.static_batch,
            tolerance=args.tolerance,
            fp16=args.fp16,
            overwrite=args.overwrite,
        )
    if args.int8:
        if args.calibrate is None:
            raise UsageError(
                "--int8 needs --calibrate DATA: real inputs, never random ones",
                fix="a .npy of inputs, or a recording with --calibrate-topic",
            )
        from edgeloop.exporters.quantize import add_int8_variant
        from edgeloop.runtime.bundles import read_manifest

        add_int8_variant(result.bundle, args.calibrate, topic=args.calibrate_topic)
        result.manifest = read_manifest(result.bundle)
    m, p = result.manifest, result.parity
    table = Table(title=f"exported {args.factory} -> {result.bundle}", title_justify="left")
    table.add_column("")
    table.add_column("")
    table.add_row("profile", m.profile or "-")
    table.add_row("opset", str(m.opset))
    for kind, specs in (("input", m.inputs), ("output", m.outputs)):
        for t in specs:
            table.add_row(kind, f"{t.name}: {t.dtype} {tuple(t.shape)}")
    table.add_row(
        "parity",
        f"max abs {p.max_abs_error:.3g}, max rel {p.max_rel_error:.3g} over "
        f"{p.cases} inputs (tolerance {p.tolerance:g})",
    )
    if "fp16" in m.parity:
        half = m.parity["fp16"]
        table.add_row(
            "fp16 parity",
            f"max abs {half['max_abs_error']:.3g} over {half['cases']} "
            f"inputs (tolerance {half['tolerance']:g}), file {m.variants['fp16']}",
        )
    if "int8" in m.parity:
        q = m.parity["int8"]
        table.add_row(
            "int8",
            f"{m.variants['int8']}: calibrated on {q['calibration']} examples; on "
            f"{q['held_out']} held out, max abs {q['max_abs_error']:.3g}, mean "
            f"{q['mean_abs_error']:.3g}; {q['speedup']:.2f}x the fp32 speed on one CPU thread "
            f"({q['int8_p50_us']:.1f} µs against {q['fp32_p50_us']:.1f})",
        )
    if m.precheck:
        verdict = "passed" if m.precheck["passed"] else "FAILED"
        table.add_row("precheck", f"{verdict} for {m.profile} (details: edgeloop precheck)")
    out.print(table)
    if m.precheck and not m.precheck["passed"]:
        err.print(
            f"[bold red]precheck failed[/] for {m.profile}: the bundle is written but "
            f"will not run as the profile asks (run edgeloop precheck {result.bundle} "
            f"--profile {m.profile})",
            highlight=False,
        )
        return 1
    return 0


def precheck_command(args: argparse.Namespace) -> int:
    from edgeloop.exporters.precheck import precheck
    from edgeloop.runtime.profiles import load_profile

    if args.json is not None:
        check_writable(args.json)
    report = precheck(args.model, load_profile(args.profile))
    table = Table(title=f"precheck of {args.model} for {report.profile}", title_justify="left")
    for col in ("check", "result", "detail"):
        table.add_column(col)
    for check in report.checks:
        detail = check.detail + (f": {', '.join(check.items)}" if check.items else "")
        table.add_row(
            check.name, Text(check.status, style=_STATUS_STYLE[check.status]), Text(detail)
        )
    out.print(table)
    failed = not report.passed or (args.strict and any(c.status == "warn" for c in report.checks))
    out.print("[bold red]FAIL[/]" if failed else "[green]PASS[/]")
    if args.json is not None:
        write_text(args.json, json.dumps(report.to_dict(), indent=2))
    return 1 if failed else 0


def quantize_command(args: argparse.Namespace) -> int:
    from edgeloop.exporters.quantize import add_int8_variant

    q = add_int8_variant(args.bundle, args.calibrate, topic=args.calibrate_topic)
    out.print(
        f"{args.bundle}: model_int8.onnx calibrated on {q['calibration']} examples; on "
        f"{q['held_out']} held out, max abs {q['max_abs_error']:.3g}, mean "
        f"{q['mean_abs_error']:.3g}; {q['speedup']:.2f}x the fp32 speed on one CPU thread "
        f"({q['int8_p50_us']:.1f} µs against {q['fp32_p50_us']:.1f})",
        highlight=False,
    )
    return 0


def warmup_command(args: argparse.Namespace) -> int:
    from edgeloop.runtime.graph_yaml import load_graph
    from edgeloop.runtime.profiles import graph_profile, load_profile

    if args.model.suffix in (".yaml", ".yml"):
        graph = load_graph(args.model)
        profile = load_profile(args.profile) if args.profile else graph_profile(graph)
        models = [(n.id, {**n.config, "warmup": 0}) for n in graph.nodes if n.type == "onnx.model"]
        if not models:
            raise UsageError(f"{args.model} has no onnx.model node to warm up")
    else:
        if not args.profile:
            raise UsageError("a model needs --profile (a graph names its own)")
        profile = load_profile(args.profile)
        models = [("model", {"model": str(args.model), "warmup": 0, "variant": args.variant})]
    table = Table(title=f"warm-up on profile {profile.name if profile else 'none'}")
    for column in ("node", "model", "provider", "placement", "built s", "p50 µs", "p99 µs"):
        table.add_column(column, justify="right" if column.endswith(("s", "µs")) else "left")
    for node_id, config in models:
        row, notes = _warm(node_id, config, profile, args.runs)
        table.add_row(*row)
        if "skipped" in notes:
            out.print(Text(f"{node_id}: skipped {notes['skipped']}"))
    out.print(table)
    return 0


def _warm(node_id: str, raw: dict[str, Any], profile: Any, runs: int) -> tuple[list[str], dict]:
    """Build one model node's session (TensorRT engines go to their cache) and time
    ``runs`` inferences: the table row and the node's notes."""
    import time

    import numpy as np

    from edgeloop.plugins.onnx_model import OnnxModel
    from edgeloop.runtime.bundles import zeros_for
    from edgeloop.runtime.node import NodeContext, build_config, new_node

    config = build_config("onnx.model", OnnxModel.Config, raw)
    OnnxModel.ports(config)  # a missing or tampered model is reported before any session
    ctx = NodeContext.standalone(node_id, config, profile=profile)
    node = new_node(OnnxModel, ctx)
    started = time.perf_counter()
    node.setup(ctx)
    built_s = time.perf_counter() - started
    feed = node._sample_feed()
    if feed is None:  # a bare model: zeros, which a model with shape inputs refuses
        feed = {t.name: zeros_for(t) for _, t in node.feeds}
        out.print(f"{node_id}: no sample inputs: timed on zeros")
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        node.session.run(node.output_names, feed)
        times.append((time.perf_counter() - t0) * 1e6)
    node.close()
    p50, p99 = (f"{np.percentile(times, q):.1f}" for q in (50, 99)) if times else ("-", "-")
    row = [
        node_id,
        str(raw["model"]),
        ctx.notes["provider"],
        ctx.notes.get("placement", "-"),
        f"{built_s:.2f}",
        p50,
        p99,
    ]
    return row, ctx.notes
