"""Calls every signature of SavedModels in a process that can import neither aezoo nor Keras.

Run by tests/test_export.py as

    python -I -S serve_without_aezoo.py SITE_PACKAGES MANIFEST.json INPUTS.npz OUTPUTS.npz SPECS.json

-I ignores PYTHONPATH and the current folder, -S skips site-packages' .pth files (which is how
an editable aezoo install is found); SITE_PACKAGES is put back on sys.path for TensorFlow and
NumPy alone, and aezoo and Keras are blocked outright, as on a server with only TensorFlow.

MANIFEST.json maps case names to {"dir": SavedModel folder, "images": [files]}.  Each
signature is called with its inputs taken by name from INPUTS.npz ("CASE/NAME"), string
inputs being the image files' bytes (a signature with an input that INPUTS.npz lacks is
described in SPECS.json but not called); outputs go to OUTPUTS.npz as "CASE/SIGNATURE/OUTPUT"
(strings as "CASE/SIGNATURE/OUTPUT/INDEX" uint8 arrays of their bytes), and the signatures'
specs to SPECS.json as {CASE: {SIGNATURE: {"inputs"|"outputs": {NAME: [dtype, shape]}}}}.
"""

import json
import sys

sys.path.append(sys.argv[1])
for blocked in ("aezoo", "keras", "tf_keras"):
    sys.modules[blocked] = None  # makes `import aezoo` raise ImportError

for name in ("aezoo", "keras"):
    try:
        __import__(name)
    except ImportError:
        pass
    else:
        sys.exit(f"{name} is importable in the serving process")

import numpy as np
import tensorflow as tf

manifest = json.loads(open(sys.argv[2]).read())
inputs = np.load(sys.argv[3])
outputs, specs = {}, {}


def describe(tensors):
    return {name: [t.dtype.name, t.shape.as_list()] for name, t in tensors.items()}


for case, entry in manifest.items():
    loaded = tf.saved_model.load(entry["dir"])
    images = [open(path, "rb").read() for path in entry["images"]]
    for signature_name, signature in loaded.signatures.items():
        specs.setdefault(case, {})[signature_name] = {
            "inputs": describe(signature.structured_input_signature[1]),
            "outputs": describe(signature.structured_outputs),
        }
        feed = {}
        for input_name, spec in signature.structured_input_signature[1].items():
            if spec.dtype == tf.string:
                feed[input_name] = tf.constant(images)
            elif f"{case}/{input_name}" in inputs.files:
                feed[input_name] = tf.constant(inputs[f"{case}/{input_name}"])
            else:
                feed = None  # no inputs given for this signature: described, not called
                break
        if feed is None:
            continue
        for output_name, value in signature(**feed).items():
            key = f"{case}/{signature_name}/{output_name}"
            if value.dtype == tf.string:
                for i, item in enumerate(value.numpy()):
                    outputs[f"{key}/{i}"] = np.frombuffer(item, np.uint8)
            else:
                outputs[key] = value.numpy()
np.savez(sys.argv[4], **outputs)
with open(sys.argv[5], "w") as file:
    json.dump(specs, file)
print(f"called {len(manifest)} SavedModels without aezoo or Keras")
