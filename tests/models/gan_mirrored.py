"""A tiny GAN under MirroredStrategy on two logical CPUs, in a process of its own (the CPU is split before
TensorFlow lists its devices): prints JSON of each replica's noise, one epoch's metrics, and the generator's weight
average after one more step with the value it should have.

Run as `python -m tests.models.gan_mirrored`.
"""

from __future__ import annotations

import json

import tensorflow as tf

if __name__ == "__main__":
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)

    from kapps.train.distribute import make_strategy

    import keras

    from tests.models.test_gan import stream, tiny_gan

    keras.utils.set_random_seed(0)
    strategy = make_strategy("mirrored")
    with strategy.scope():
        gan = tiny_gan(average=0.5)
    noise = strategy.run(tf.function(lambda: gan.noise(2)))
    history = gan.fit(stream(), steps_per_epoch=20, epochs=1, verbose=0).history
    # The average after one more step, against the update computed here from the weights before and after it.
    decay = min(0.5, 22 / 31)  # step 21: (1 + 21) / (10 + 21)
    before = gan.averages[-1].numpy()
    gan.fit(stream(), steps_per_epoch=1, epochs=1, verbose=0)
    expected = decay * before + (1 - decay) * gan.generator.weights[-1].numpy()
    print(
        json.dumps(
            {
                "replicas": strategy.num_replicas_in_sync,
                "noise": [t.numpy().tolist() for t in strategy.experimental_local_results(noise)],
                "metrics": {k: v[-1] for k, v in history.items()},
                "average": gan.averages[-1].numpy().tolist(),
                "expected_average": expected.tolist(),
            }
        )
    )
