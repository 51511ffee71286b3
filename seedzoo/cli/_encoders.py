"""The encoder options that `seedzoo eval` and `seedzoo embed` share (not a subcommand itself)."""

from __future__ import annotations

from seedzoo.cli._arguments import add_arch_arguments, positive_int, print_load_report
from seedzoo.errors import SeedzooError

MODEL_SPECS = """\
model specs: pixels (raw pixels, the baseline), timm:<arch> (random weights), a catalog
name, hf-hub:<org>/<name>[@revision], a folder with config.json + model.safetensors, or a
weights file with --arch (and --model-args); or an exported file with --onnx."""


def add_encoder_arguments(group, what: str) -> None:
    """``--model``, ``--arch``, ``--model-args``, ``--backend``, ``--onnx``, ``--threads`` and
    ``--device`` on ``group``; ``what`` says what the encoder is for ("to evaluate", "to embed
    with")."""
    group.add_argument("--model", metavar="SPEC",
                       help=f"encoder {what} (see model specs below); with --onnx it only names "
                            "the model in the results (default: the .onnx path)")
    add_arch_arguments(group)
    group.add_argument("--backend", choices=("torch", "onnxruntime"), default=None,
                       help="torch (default), or onnxruntime to run an exported --onnx file")
    group.add_argument("--onnx", metavar="FILE",
                       help="exported encoder to run with ONNX Runtime (implies "
                            "--backend onnxruntime)")
    group.add_argument("--threads", type=positive_int, metavar="N",
                       help="ONNX Runtime intra-op threads (default: torch's thread count)")
    group.add_argument("--device", help="torch device, e.g. cpu or cuda (default: cuda if "
                                        "available for torch encoders with weights, else cpu)")


def load_encoder_from(args):
    """``(encoder, spec, config)`` for the parsed encoder options: a torch encoder (or raw
    pixels) or an ONNX Runtime one, the spec that names it, and the options to record."""
    backend = args.backend or ("onnxruntime" if args.onnx else "torch")
    if backend == "torch":
        if args.onnx:
            raise SeedzooError("--onnx runs with ONNX Runtime; drop --backend torch or --onnx.")
        if not args.model:
            raise SeedzooError(f"Say which encoder to use with --model (e.g. --model pixels or "
                               f"--model timm:resnet18), or give an exported one with --onnx "
                               f"(see `seedzoo {args.command_name} --help`).")
        from seedzoo.evaluation.pixels import load_encoder

        model = load_encoder(args.model, arch=args.arch, model_args=args.model_args)
        print_load_report(model)
        return model, args.model, {"backend": "torch", "onnx": None,
                                   **({"model_args": args.model_args} if args.model_args else {})}
    if not args.onnx:
        raise SeedzooError("--backend onnxruntime needs the exported model: --onnx model.onnx "
                           "(write one with `seedzoo export`).")
    try:
        from seedzoo.deploy.runtime import OrtEncoder
    except ImportError as error:
        raise SeedzooError(f"The ONNX Runtime backend is not available ({error}); use "
                           "--backend torch.") from None
    encoder = OrtEncoder(args.onnx, threads=args.threads)
    return encoder, args.model or args.onnx, {"backend": "onnxruntime", "onnx": args.onnx,
                                              "threads": args.threads}
