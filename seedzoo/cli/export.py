"""`seedzoo export`: a validated, self-describing ONNX file (and optionally its INT8 copy)."""

from __future__ import annotations

from seedzoo.cli._arguments import (
    LibraryDefault,
    add_command,
    add_model_arguments,
    load_model,
    output_file,
    positive_int,
)

_EXPORT = "seedzoo.deploy.onnx_export:export_onnx"
_QUANTIZE = "seedzoo.deploy.quantize:quantize_int8"
_COMPARE = "seedzoo.evaluation.int8:compare_knn"


def register(subparsers) -> None:
    parser = add_command(
        subparsers, __name__,
        help="export an encoder to ONNX, validated against torch (optionally INT8)",
        description="Export an encoder to ONNX with a dynamic batch axis (torch.onnx dynamo "
        "exporter, explicit opset). The file records its preprocessing (input size, mean, std, "
        "interpolation, crop) and the source model id and revision in its metadata. It is "
        "checked by onnx.checker and validated against torch on real images of "
        "--validate-dataset at batch 1 and 8; a disagreement is an error and leaves no file. "
        "With --int8 a statically quantized copy (QDQ, per-channel weights) is calibrated on "
        "--calib-dataset, and with --knn-dataset its k-NN top-1 is shown next to fp32's. "
        "With --with-classifier the file is the encoder and the classifier kept beside it "
        "(a supervised or kd run's folder): its output is the logits, and its metadata says so.",
        epilog="examples: seedzoo export --model timm:resnet18 --out resnet18.onnx "
        "--int8 --calib-dataset fashion-mnist --knn-dataset fashion-mnist; "
        "seedzoo export --model runs/supervised --with-classifier --out classifier.onnx")
    add_model_arguments(parser)
    parser.add_argument("--with-classifier", action="store_true",
                        help="export the encoder with the classifier kept beside it "
                        "(classifier.safetensors of an encoder or run folder): the file outputs "
                        "logits instead of features")
    parser.add_argument("--out", required=True, metavar="FILE.onnx", type=output_file,
                        help="where to write it")
    parser.add_argument("--opset", type=int, default=LibraryDefault(_EXPORT, "opset"),
                        help="ONNX opset (default: %(default)s)")
    parser.add_argument("--validate-dataset", metavar="NAME",
                        default=LibraryDefault(_EXPORT, "validate_dataset"),
                        help="registry dataset whose test images validate the export "
                        "(default: %(default)s; also digits, cifar10, imagefolder:<path>, ...)")
    parser.add_argument("--data-root", metavar="DIR",
                        help="where datasets are looked for (default $SEEDZOO_DATA_ROOT or ./data)")
    int8 = parser.add_argument_group("INT8 quantization")
    int8.add_argument("--int8", action="store_true",
                      help="also write a static INT8 copy (QDQ; int8 per-channel weights, uint8 "
                      "activations)")
    int8.add_argument("--int8-out", metavar="FILE.onnx", type=output_file,
                      help="where the INT8 copy goes (default: <out stem>.int8.onnx)")
    int8.add_argument("--calib-dataset", default=LibraryDefault(_QUANTIZE, "calib_dataset"),
                      metavar="NAME",
                      help="registry dataset whose training images calibrate activation ranges "
                      "(default: %(default)s)")
    int8.add_argument("--calib-size", type=positive_int,
                      default=LibraryDefault(_QUANTIZE, "calib_size"), metavar="N",
                      help="calibration images, a seeded random subset (default: %(default)s)")
    int8.add_argument("--knn-dataset", metavar="NAME",
                      help="compare the k-NN top-1 of fp32 and INT8 on this dataset")
    int8.add_argument("--knn-train", type=positive_int,
                      default=LibraryDefault(_COMPARE, "train_limit"), metavar="N",
                      help="training images in the k-NN bank, a seeded subset "
                      "(default: %(default)s)")
    int8.add_argument("--knn-test", type=positive_int,
                      default=LibraryDefault(_COMPARE, "test_limit"), metavar="N",
                      help="test images classified, a seeded subset (default: %(default)s)")
    parser.set_defaults(func=run)


def run(args) -> int:
    from pathlib import Path

    from seedzoo.deploy.onnx_export import export_onnx, model_source
    from seedzoo.errors import SeedzooError
    from seedzoo.zoo import EncoderClassifier, classifier_for

    if args.knn_dataset and not args.int8:
        raise SeedzooError("--knn-dataset compares fp32 with INT8; add --int8.")
    if args.int8_out and Path(args.int8_out).resolve() == Path(args.out).resolve():
        raise SeedzooError(f"--int8-out {args.int8_out} would overwrite the fp32 file --out; "
                           "give the INT8 copy another name (default: <out stem>.int8.onnx).")
    classifier = classifier_for(args.model) if args.with_classifier else None  # before loading
    model = load_model(args)
    if classifier is not None:
        model = EncoderClassifier(model, classifier)
    hub_id, _ = model_source(model)  # a hub model knows its id and commit itself
    report = export_onnx(model, args.out, opset=args.opset, model_id=hub_id or args.model,
                         validate_dataset=args.validate_dataset, data_root=args.data_root)
    meta = report.metadata
    output = (f"logits of {meta['num_classes']} classes" if meta["output"] == "logits"
              else f"{meta['num_features']}-d features")
    print(f"Exported {meta.get('model_id', meta['architecture'])} -> {report.path} ({output}; "
          f"opset {report.opset}, {report.exporter}, {report.nodes} nodes, "
          f"{report.size_bytes / 1e6:.1f} MB, {report.seconds:.1f} s)")
    print(f"onnx.checker: passed. Validation against torch on {report.validation.dataset} test "
          f"images: {report.validation.summary()}")
    print("Metadata: " + ", ".join(f"{key}={meta[key]}" for key in (
        "input_size", "mean", "std", "interpolation", "crop_pct", "crop_mode", "revision")
        if key in meta))
    if args.int8:
        from seedzoo.deploy.quantize import quantize_int8
        from seedzoo.evaluation.int8 import compare_knn

        out = Path(args.int8_out) if args.int8_out else report.path.with_suffix(".int8.onnx")
        quantized = quantize_int8(report.path, out, calib_dataset=args.calib_dataset,
                                  calib_size=args.calib_size, data_root=args.data_root)
        print(f"INT8 -> {quantized.path} ({quantized.settings}; calibrated on "
              f"{quantized.calib_size} {quantized.calib_dataset} training images; "
              f"{quantized.size_bytes / 1e6:.1f} MB vs {quantized.fp32_size_bytes / 1e6:.1f} MB "
              f"fp32, {quantized.seconds:.1f} s)")
        if args.knn_dataset:
            knn = compare_knn(report.path, out, args.knn_dataset, train_limit=args.knn_train,
                              test_limit=args.knn_test, data_root=args.data_root)
            print(f"k-NN top-1 (k={knn['k']}) on {knn['dataset']} ({knn['train_samples']} bank, "
                  f"{knn['test_samples']} queries): fp32 {knn['fp32_top1']:.2f}%, INT8 "
                  f"{knn['int8_top1']:.2f}% ({knn['int8_minus_fp32_points']:+.2f} points)")
    return 0
