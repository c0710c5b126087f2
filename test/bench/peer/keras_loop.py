"""The loop a Python user would write instead of streamgrad, for `npm run bench`'s peerRate.

Reads the bench topic from the beginning with confluent-kafka, decodes each confluent-framed TrainingSample with
fastavro, and trains a bench model with Keras `train_on_batch` on batches of 256 in arrival order, Adam 0.001:
`mlp16`, 16-64-64-1 ReLU with mean squared error, or `softmax64`, 64-256-256-10 ReLU and softmax with cross-entropy
on class indices. Prints one JSON line: samples/s between 10% and 90% of the topic (as the bench measures
streamgrad), the same over the whole run, and the mean loss on the holdout (squared error, or cross-entropy).

    python keras_loop.py --brokers HOST:PORT --topic T --total N --holdout FILE.json [--model mlp16|softmax64]
"""

import argparse
import io
import json
import os
import sys
import time
import uuid

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import fastavro  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from confluent_kafka import Consumer, KafkaError  # noqa: E402

SCHEMA_FILE = os.path.join(os.path.dirname(__file__), "..", "..", "..", "schemas", "training-sample.avsc")
CONFLUENT_HEADER = 5  # magic byte and schema id


MODELS = {
    # features, hidden units, outputs
    "mlp16": (16, 64, 1),
    "softmax64": (64, 256, 10),
}


def bench_model(name: str) -> tf.keras.Model:
    features, hidden, outputs = MODELS[name]
    classes = outputs > 1
    model = tf.keras.Sequential(
        [
            tf.keras.Input(shape=(features,)),
            tf.keras.layers.Dense(hidden, activation="relu"),
            tf.keras.layers.Dense(hidden, activation="relu"),
            tf.keras.layers.Dense(outputs, activation="softmax" if classes else None),
        ]
    )
    loss = "sparse_categorical_crossentropy" if classes else "mse"
    model.compile(optimizer=tf.keras.optimizers.Adam(learning_rate=0.001), loss=loss)
    return model


def holdout_loss(model: tf.keras.Model, name: str, holdout: dict) -> float:
    hx = np.asarray(holdout["features"], dtype=np.float32)
    hy = np.asarray(holdout["labels"], dtype=np.float32)
    predicted = model.predict(hx, batch_size=1024, verbose=0)
    if MODELS[name][2] == 1:
        return float(np.mean((predicted[:, 0] - hy) ** 2))
    # Cross-entropy with probabilities clipped to [1e-7, 1 - 1e-7], as streamgrad scores it.
    chosen = np.clip(predicted[np.arange(len(hy)), hy.astype(np.int64)], 1e-7, 1 - 1e-7)
    return float(np.mean(-np.log(chosen)))


def train(args: argparse.Namespace) -> dict:
    with open(SCHEMA_FILE) as f:
        schema = fastavro.parse_schema(json.load(f))
    consumer = Consumer(
        {
            "bootstrap.servers": args.brokers,
            "group.id": f"bench-peer-{uuid.uuid4()}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
            "isolation.level": "read_committed",
        }
    )
    consumer.subscribe([args.topic])
    model = bench_model(args.model)
    x = np.empty((args.batch, MODELS[args.model][0]), dtype=np.float32)
    y = np.empty((args.batch, 1), dtype=np.float32)
    filled = 0
    seen = 0
    started = time.perf_counter()
    marks = {}
    try:
        while seen < args.total:
            for message in consumer.consume(num_messages=1000, timeout=1.0):
                if message.error():
                    if message.error().code() == KafkaError._PARTITION_EOF:
                        continue
                    raise RuntimeError(f"consume {args.topic}: {message.error()}")
                sample = fastavro.schemaless_reader(io.BytesIO(message.value()[CONFLUENT_HEADER:]), schema)
                x[filled] = sample["features"]
                y[filled, 0] = sample["label"]
                filled += 1
                seen += 1
                if filled == args.batch or seen == args.total:
                    model.train_on_batch(x[:filled], y[:filled])
                    filled = 0
                    for share in (0.1, 0.9):
                        if share not in marks and seen >= args.total * share:
                            marks[share] = (seen, time.perf_counter())
    finally:
        consumer.close()
    ended = time.perf_counter()
    (seen10, at10), (seen90, at90) = marks[0.1], marks[0.9]
    with open(args.holdout) as f:
        holdout = json.load(f)
    return {
        "rate": (seen90 - seen10) / (at90 - at10),
        "rateFromStart": seen / (ended - started),
        "samples": seen,
        "holdoutLoss": holdout_loss(model, args.model, holdout),
        "tensorflow": tf.__version__,
        "intraOpThreads": tf.config.threading.get_intra_op_parallelism_threads(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--brokers", required=True)
    parser.add_argument("--topic", required=True)
    parser.add_argument("--total", type=int, required=True)
    parser.add_argument("--holdout", required=True, help="JSON file: {features: number[][], labels: number[]}")
    parser.add_argument("--model", choices=sorted(MODELS), default="mlp16")
    parser.add_argument("--batch", type=int, default=256)
    result = train(parser.parse_args())
    json.dump(result, sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
