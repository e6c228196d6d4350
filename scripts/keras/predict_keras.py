"""Loads `.keras` archives with Keras 3 and prints their predictions, for the saveKerasModel tests.

Reads one JSON request per line on stdin:
    {"model": "<path to .keras>", "inputs": [{"data": [...flat...], "shape": [...], "dtype": "float32"}, ...]}
and writes one JSON line per request on stdout:
    {"outputs": [{"data": [...flat...], "shape": [...]}, ...], "layers": [<class>, ...], "configs": {<name>: get_config()}}
or {"error": "<type>: <message>"}. The model is loaded with `keras.saving.load_model` as a Keras user
would: no custom objects, safe_mode on (the default), so a file that needs code of this project fails.
One process serves many models: Python and TensorFlow take seconds to start.
"""
import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import numpy as np  # noqa: E402
import keras  # noqa: E402


def predict(request):
    model = keras.saving.load_model(request["model"])
    inputs = [np.asarray(x["data"], dtype=x.get("dtype", "float32")).reshape(x["shape"]) for x in request["inputs"]]
    outputs = model.predict(inputs if len(inputs) > 1 else inputs[0], verbose=0)
    if not isinstance(outputs, (list, tuple)):
        outputs = [outputs]
    return {
        "outputs": [{"data": np.asarray(y, dtype="float64").ravel().tolist(), "shape": list(np.shape(y))} for y in outputs],
        "layers": [type(layer).__name__ for layer in model.layers],
        # What Keras itself writes for each layer once loaded, to compare with the file's config.json.
        "configs": {layer.name: json.loads(json.dumps(layer.get_config(), default=str)) for layer in model.layers},
    }


def main():
    for line in sys.stdin:
        if not line.strip():
            continue
        try:
            reply = predict(json.loads(line))
        except Exception as error:  # the test reads the message
            reply = {"error": f"{type(error).__name__}: {error}"}
        sys.stdout.write(json.dumps(reply) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
