"""TFLite without TensorFlow, through LiteRT (the `export` extra): convert, quantise, label, run.

- convert: litert-converter turns the StableHLO of a `jax.export` into a TFLite flatbuffer with
  one signature, `serving_default`: `images` in, `logits` out.
- quantise, after training, with litert-quantizer: `int8` is full-integer quantisation (int8
  weights and activations, activation ranges calibrated on a few images; the input stays
  uint8, the logits come out as int8 with a scale and zero point, which `Runner` applies);
  `int8_weights` is dynamic-range quantisation (int8 weights, float32 activations, no
  calibration).
- label: the export's description (class names, preprocessing) as the flatbuffer's metadata
  entry "bird_jax", so the file alone can name birds.
- run: ai-edge-litert's interpreter, one image at a time (the input shape is fixed). It refuses,
  or crashes the process on, some int8 models (ConvNeXt's: see README), so `crash` tries a model
  in a fresh process before it is written.
"""

import importlib
import json
import subprocess
import sys
import tempfile
import warnings
from pathlib import Path
from types import ModuleType

import numpy as np

from bird_jax.cli import UserError

SIGNATURE, INPUT, OUTPUT = "serving_default", "images", "logits"
METADATA_NAME = "bird_jax"
QUANTIZATIONS = ("int8", "int8_weights")
_FILE_IDENTIFIER = b"TFL3"  # bytes 4-8 of every TFLite flatbuffer


def _litert(module: str) -> ModuleType:
    """A LiteRT module; a UserError naming the install command where the extra is missing."""
    try:
        return importlib.import_module(module)
    except ImportError as error:
        raise UserError(
            f"TFLite needs the export extra (LiteRT, no TensorFlow): pip install -e '.[export]' "
            f"({error})."
        ) from error


def require() -> None:
    """Fails early, with the install command, where the export extra is not installed."""
    for module in ("litert_converter", "litert_quantizer", "ai_edge_litert.interpreter"):
        _litert(module)


def is_tflite(content: bytes) -> bool:
    return content[4:8] == _FILE_IDENTIFIER


def convert(stablehlo: bytes) -> bytes:
    """A TFLite flatbuffer from a serialized StableHLO module (`Exported.mlir_module_serialized`)
    whose function takes the images and returns the logits."""
    api = _litert("litert_converter.converter_api_ext")
    ir = _litert("litert_converter.mlir.ir")
    passmanager = _litert("litert_converter.mlir.passmanager")
    stablehlo_dialect = _litert("litert_converter.mlir.dialects.stablehlo")
    context = ir.Context()
    api.prepare_mlir_context(context)
    with context:
        module = stablehlo_dialect.deserialize_portable_artifact(context, stablehlo)
        try:
            api.run_convert_to_tfl_passes(
                module, passmanager.PassManager(), api.ConvertToTFLConfig()
            )
        except ValueError as error:  # MLIR diagnostics: the first "error:" line says what failed
            lines = [line for line in str(error).splitlines() if "error:" in line] or [str(error)]
            reason = lines[0].split("error:", 1)[-1].strip()
            raise ValueError(f"LiteRT cannot convert this model to TFLite: {reason}") from error
        api.set_signature(module.operation, SIGNATURE, [INPUT], [OUTPUT])
        return api.export_flatbuffer_to_bytes(module.operation)


def quantize(model: bytes, mode: str, calibration: np.ndarray | None = None) -> bytes:
    """`model` quantised as `mode` (QUANTIZATIONS); `int8` needs `calibration`, uint8 images
    [N, S, S, 3] whose activation ranges it uses."""
    quantizer = _litert("litert_quantizer.quantizer")
    recipe = _litert("litert_quantizer.recipe")
    recipes = {"int8": recipe.static_wi8_ai8, "int8_weights": recipe.dynamic_wi8_afp32}
    job = quantizer.Quantizer(model, recipes[mode]())
    with warnings.catch_warnings():  # it keeps every tensor to calibrate, and warns that it does
        warnings.filterwarnings("ignore", "Warning: Enabling `experimental_preserve_all_tensors`")
        ranges = None
        if job.need_calibration:
            ranges = job.calibrate({SIGNATURE: [{INPUT: image[None]} for image in calibration]})
        result = job.quantize(ranges, enable_progress_report=False)
    return bytes(result.quantized_model)


def with_metadata(model: bytes, metadata: dict) -> bytes:
    """`model` with `metadata` as JSON in its metadata entry "bird_jax"."""
    utils = _litert("ai_edge_litert.tools.flatbuffer_utils")
    schema = _litert("ai_edge_litert.schema_py_generated")
    tree = utils.read_model_from_bytearray(model)
    content = np.frombuffer(json.dumps(metadata).encode(), np.uint8)
    tree.buffers.append(schema.BufferT(data=content))
    tree.metadata = [m for m in tree.metadata or [] if m.name != METADATA_NAME]
    tree.metadata.append(schema.MetadataT(name=METADATA_NAME, buffer=len(tree.buffers) - 1))
    return bytes(utils.convert_object_to_bytearray(tree))


def read_metadata(model: bytes) -> dict | None:
    """The JSON in the metadata entry "bird_jax"; None if there is none."""
    schema = _litert("ai_edge_litert.schema_py_generated")
    root = schema.Model.GetRootAs(model, 0)
    for i in range(root.MetadataLength()):
        entry = root.Metadata(i)
        if entry.Name() == METADATA_NAME.encode():
            return json.loads(root.Buffers(entry.Buffer()).DataAsNumpy().tobytes())
    return None


# Runs a model once in a fresh interpreter process (argv: model path, input .npy).
_RUN_ONCE = """
import sys
import numpy as np
from ai_edge_litert.interpreter import Interpreter
runner = Interpreter(model_path=sys.argv[1]).get_signature_runner("serving_default")
runner(images=np.load(sys.argv[2]))
"""


def crash(model: bytes, image: np.ndarray) -> str | None:
    """How LiteRT's interpreter fails on `model` with one uint8 image [S, S, 3], run in a fresh
    process (a crash there cannot take this one down); None if it runs."""
    with tempfile.TemporaryDirectory() as scratch:
        path, batch = Path(scratch) / "model.tflite", Path(scratch) / "images.npy"
        path.write_bytes(model)
        np.save(batch, image[None])
        command = [sys.executable, "-c", _RUN_ONCE, str(path), str(batch)]
        result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode == 0:
        return None
    if result.returncode < 0:
        return f"killed by signal {-result.returncode}"
    last = (result.stderr.strip().splitlines() or [f"exit status {result.returncode}"])[-1]
    return last.split(".")[0][:200]  # the first sentence: LiteRT repeats it per tensor


class Runner:
    """A TFLite model on this CPU (LiteRT's interpreter, XNNPACK): uint8 images to float32
    logits, one image per call, quantised logits converted back to float."""

    def __init__(self, model: bytes, num_threads: int | None = None):
        interpreter = _litert("ai_edge_litert.interpreter")
        self._interpreter = interpreter.Interpreter(model_content=model, num_threads=num_threads)
        self._run = self._interpreter.get_signature_runner(SIGNATURE)
        (output,) = self._run.get_output_details().values()
        self._scale, self._zero_point = output["quantization"]

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        """float32 logits [N, num_classes] for uint8 [N, S, S, 3] images."""
        rows = [self._run(**{INPUT: image[None]})[OUTPUT][0] for image in batch]
        logits = np.stack(rows).astype(np.float32)
        if self._scale:
            logits = (logits - self._zero_point) * self._scale
        return logits
