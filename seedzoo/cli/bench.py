"""`seedzoo bench`: torch eager vs ONNX Runtime latency, measured side by side in one run."""

from __future__ import annotations

from seedzoo.cli._arguments import (
    LibraryDefault,
    add_command,
    add_model_arguments,
    load_model,
    non_negative_float,
    output_file,
    positive_int,
    positive_int_list,
)

_BENCHMARK = "seedzoo.deploy.latency:benchmark_latency"


def register(subparsers) -> None:
    parser = add_command(
        subparsers, __name__,
        help="latency of torch eager vs ONNX Runtime fp32 (and INT8), side by side",
        description="Time the torch model (eager), its ONNX file in ONNX Runtime through "
        "seedzoo's OrtEncoder and through a bare InferenceSession.run, and an INT8 file when "
        "given: same input, same threads, interleaved after warm-up until the time budget is "
        "spent. Prints p50/p90/p99 latency, images/s and the ORT/torch, INT8/fp32 and "
        "seedzoo/bare ratios, and says plainly when ORT or INT8 is slower. The JSON also "
        "records the machine, library versions, thread and session settings and load average. "
        "Without --onnx the model is exported (and validated) to a temporary file first.",
        epilog="example: seedzoo bench --model timm:resnet18 --onnx resnet18.onnx "
        "--int8 resnet18.int8.onnx --batch-sizes 1,32 --threads 2 --out bench.json")
    add_model_arguments(parser)
    parser.add_argument("--onnx", metavar="FILE", help="fp32 ONNX file exported from --model "
                        "(default: export one to a temporary folder)")
    parser.add_argument("--int8", metavar="FILE", help="INT8 ONNX file (seedzoo export --int8)")
    parser.add_argument("--batch-sizes", type=positive_int_list("batch sizes"),
                        default=LibraryDefault(_BENCHMARK, "batch_sizes"), metavar="B,B,..",
                        help="comma-separated batch sizes (default: %(default)s)")
    parser.add_argument("--threads", type=int, metavar="N",
                        help="threads for torch and ONNX Runtime alike (default: torch's)")
    parser.add_argument("--budget", type=non_negative_float,
                        default=LibraryDefault(_BENCHMARK, "budget_s"), metavar="SECONDS",
                        help="measuring time per batch size after warm-up, shared by the "
                        "backends (default: %(default)s)")
    parser.add_argument("--min-iterations", type=positive_int,
                        default=LibraryDefault(_BENCHMARK, "min_iterations"), metavar="N",
                        help="calls per backend and batch size at least, whatever the budget "
                        "(default: %(default)s)")
    parser.add_argument("--out", metavar="FILE.json", type=output_file,
                        help="write the full result as JSON")
    parser.add_argument("--validate-dataset",
                        default=LibraryDefault("seedzoo.deploy.onnx_export:export_onnx",
                                               "validate_dataset"), metavar="NAME",
                        help="dataset validating the temporary export made without --onnx "
                        "(default: %(default)s)")
    parser.add_argument("--data-root", metavar="DIR", help="where datasets are looked for")
    parser.set_defaults(func=run)


def run(args) -> int:
    import tempfile
    from pathlib import Path

    from seedzoo.deploy.latency import benchmark_latency, format_latency_table
    from seedzoo.deploy.onnx_export import export_onnx, model_source
    from seedzoo.errors import SeedzooError
    from seedzoo.results import write_report

    if args.threads is not None and args.threads < 1:
        raise SeedzooError(f"--threads must be at least 1, got {args.threads}.")
    model = load_model(args)
    with tempfile.TemporaryDirectory(prefix="seedzoo-bench-") as tmp:
        onnx_path = args.onnx
        if onnx_path is None:
            onnx_path = export_onnx(model, Path(tmp) / "model.onnx",
                                    model_id=model_source(model)[0] or args.model,
                                    validate_dataset=args.validate_dataset,
                                    data_root=args.data_root).path
        result = benchmark_latency(model, onnx_path, int8_path=args.int8,
                                   batch_sizes=args.batch_sizes, threads=args.threads,
                                   budget_s=args.budget, min_iterations=args.min_iterations)
    result["arguments"] = {key: value for key, value in vars(args).items() if key != "func"}
    print(format_latency_table(result))
    if args.out:
        print(f"Wrote {write_report(result, args.out)}")
    return 0
