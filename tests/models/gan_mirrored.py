"""A tiny GAN under MirroredStrategy on two logical CPUs, in a process of its own (the CPU is split before
TensorFlow lists its devices): prints JSON of each replica's noise and one epoch's metrics.

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
        gan = tiny_gan()
    noise = strategy.run(tf.function(lambda: gan.noise(2)))
    history = gan.fit(stream(), steps_per_epoch=20, epochs=1, verbose=0).history
    print(
        json.dumps(
            {
                "replicas": strategy.num_replicas_in_sync,
                "noise": [t.numpy().tolist() for t in strategy.experimental_local_results(noise)],
                "metrics": {k: v[-1] for k, v in history.items()},
            }
        )
    )
