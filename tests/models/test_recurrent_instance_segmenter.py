"""The recurrent instance segmenter: its parameter count from the layer equations, its outputs and stop, loading,
its loss (Hungarian-matched soft IoU and the stopping loss) against NumPy, and training through its trainer."""

import itertools

import kapps.models
from kapps.losses import recurrent_instance_losses
from kapps.models import RecurrentInstanceTrainer, recurrent_instance_segmenter

import keras
import numpy as np
import pytest
import tensorflow as tf

TINY = {"input_shape": (16, 16, 3), "max_instances": 4, "encoder_filters": (4, 8), "lstm_filters": 4}


def conv(inputs: int, outputs: int, k: int = 3) -> int:
    return k * k * inputs * outputs + outputs


def test_the_parameter_count_is_the_layer_equations():
    encoder = conv(3, 16) + conv(16, 16) + conv(16, 32) + conv(32, 32) + conv(32, 64) + conv(64, 64)
    lstm = 3 * 3 * (64 + 1 + 32) * 4 * 32 + 4 * 32  # input: 64 features + the canvas; state: 32
    heads = (32 + 1) + (32 + 1)  # 1x1 mask convolution, dense confidence
    assert encoder == 72_080 and lstm == 111_872
    info = kapps.models.info("recurrent_instance_segmenter")
    assert encoder + lstm + heads == info.param_count == 184_018
    assert info.task == "instance_sequence" and "184,018" in info.source
    # Without the canvas the cell reads one channel fewer: 3 x 3 x 1 x 128 weights fewer; steps share every weight.
    paper = recurrent_instance_segmenter(feedback=False, max_instances=3)
    assert paper.count_params() == 184_018 - 9 * 128
    assert len(paper.get_layer("conv_lstm").weights) == 3


def test_outputs_and_the_stop():
    keras.utils.set_random_seed(0)
    model = recurrent_instance_segmenter(**TINY)
    shapes = {k: tuple(v.shape) for k, v in model.output.items()}
    assert shapes == {"masks": (None, 4, 16, 16), "confidences": (None, 4), "count": (None,)}
    # Spread the confidences around 0.5 so that images stop at different steps: the confidence head's kernel
    # scaled up and its bias set to minus the median logit of the first step.
    images = np.random.default_rng(0).uniform(0, 1, (8, 16, 16, 3)).astype("float32")
    head = model.get_layer("confidence_head")
    kernel, _ = head.get_weights()
    head.set_weights([kernel * 100, np.zeros(1, "float32")])
    logits = keras.Model(model.input, model.get_layer("step_confidence_logits").output)(images)
    head.set_weights([kernel * 100, -np.median(np.asarray(logits)[:, 0], keepdims=True)])
    outputs = {k: np.asarray(v) for k, v in model(images).items()}
    steps = keras.Model(model.input, model.get_layer("step_masks").output)(images)
    above = outputs["confidences"] >= 0.5
    expected = np.array([np.argmin(np.append(row, False)) for row in above])  # steps before the first low one
    np.testing.assert_array_equal(outputs["count"], expected)
    assert len(set(expected)) > 1, expected
    # an image that stops at a step is stopped for good, though a later step is confident again
    assert any(outputs["confidences"][i, n:].max() >= 0.5 for i, n in enumerate(expected) if n < 4)
    for i, n in enumerate(expected.astype(int)):
        np.testing.assert_array_equal(outputs["masks"][i, :n], np.asarray(steps)[i, :n])
        assert not outputs["masks"][i, n:].any()


def test_it_saves_and_loads_in_safe_mode(tmp_path):
    model = recurrent_instance_segmenter(**TINY)
    model.save(tmp_path / "m.keras")
    loaded = keras.saving.load_model(tmp_path / "m.keras", safe_mode=True)
    images = np.random.default_rng(1).uniform(0, 1, (2, 16, 16, 3)).astype("float32")
    for key, value in model(images).items():
        np.testing.assert_array_equal(np.asarray(loaded(images)[key]), np.asarray(value))


def test_bad_settings_are_refused():
    with pytest.raises(ValueError, match=r"multiples of 4. Received: input_shape=\(30, 32, 3\)"):
        recurrent_instance_segmenter(input_shape=(30, 32, 3))
    with pytest.raises(ValueError, match="max_instances must be a positive integer. Received: max_instances=0"):
        recurrent_instance_segmenter(max_instances=0)
    with pytest.raises(ValueError, match="encoder_filters must be positive integers"):
        recurrent_instance_segmenter(encoder_filters=())
    with pytest.raises(ValueError, match="stop_weight must be a non-negative number"):
        RecurrentInstanceTrainer(recurrent_instance_segmenter(**TINY), stop_weight=-1)
    with pytest.raises(ValueError, match="pixel_weight must be a non-negative number"):
        RecurrentInstanceTrainer(recurrent_instance_segmenter(**TINY), pixel_weight=-1)
    with pytest.raises(ValueError, match="foreground_weight must be a non-negative number"):
        RecurrentInstanceTrainer(recurrent_instance_segmenter(**TINY), foreground_weight=-0.5)
    with pytest.raises(ValueError, match=r"mask_stride must be None or a stride of the encoder below its last, one of"):
        recurrent_instance_segmenter(mask_stride=1)
    with pytest.raises(ValueError, match="mask_stride must be None or a stride"):
        recurrent_instance_segmenter(**TINY, mask_stride=2)  # a two-block encoder has no stride below its last
    with pytest.raises(ValueError, match="decoder_filters must be a positive integer"):
        recurrent_instance_segmenter(mask_stride=2, decoder_filters=0)


def test_the_finer_mask_decoder_and_the_mask_bias():
    """mask_stride=2: each step's mask is a 3x3 convolution (D = 8) of the state upsampled to stride 2 beside block
    1's pooled features (16 channels), then the 1x1 head; the canvas is the masks average-pooled back to stride 4."""
    keras.utils.set_random_seed(0)
    plain = recurrent_instance_segmenter(input_shape=(32, 32, 3), max_instances=3)
    finer = recurrent_instance_segmenter(input_shape=(32, 32, 3), max_instances=3, mask_stride=2, mask_bias=-3.0)
    decoder = conv(32 + 16, 8)
    assert finer.count_params() == plain.count_params() - (32 + 1) + decoder + (8 + 1)
    assert finer.get_layer("mask_decoder").kernel.shape == (3, 3, 48, 8)
    np.testing.assert_array_equal(finer.get_layer("mask_head").bias.numpy(), [-3.0])
    images = np.random.default_rng(0).uniform(0, 1, (2, 32, 32, 3)).astype("float32")
    steps = np.asarray(keras.Model(finer.input, finer.get_layer("step_masks").output)(images))
    assert steps.shape == (2, 3, 32, 32)
    # The mask logits start at the bias: the masks near sigmoid(-3) = 0.047, not 0.5.
    assert 0.01 < float(np.median(steps)) < 0.15
    # The canvas the second step reads is the first step's mask (8 x 8 at stride 4) from its 16 x 16 at stride 2.
    logits = keras.Model(finer.input, finer.get_layer("step_mask_logits").output)(images)
    canvas = keras.Model(finer.input, finer.get_layer("step2_input").output)(images)
    first = 1 / (1 + np.exp(-np.asarray(logits)[..., :1]))  # (2, 16, 16, 1)
    pooled = first.reshape(2, 8, 2, 8, 2, 1).mean(axis=(2, 4))
    np.testing.assert_allclose(np.asarray(canvas)[..., -1:], pooled, rtol=1e-5, atol=1e-6)


def test_the_trainers_loss_weighs_the_terms():
    truth, counts, _, _ = hand_made_case()
    images = np.random.default_rng(0).uniform(0, 1, (2, 16, 16, 3)).astype("float32")
    masks = np.zeros((2, 3, 16, 16), "uint8")
    masks[:, :, :1, :4] = truth
    targets = {"masks": masks, "count": counts}
    segmenter = recurrent_instance_segmenter(**TINY)
    paper = RecurrentInstanceTrainer(segmenter).losses_of(images, targets, training=False)
    assert float(paper["loss"]) == pytest.approx(float(paper["match_loss"] + paper["stop_loss"]), rel=1e-6)
    weighted = RecurrentInstanceTrainer(segmenter, stop_weight=2.0, pixel_weight=0.5, foreground_weight=3.0)
    terms = weighted.losses_of(images, targets, training=False)
    total = terms["match_loss"] + 2.0 * terms["stop_loss"] + 0.5 * terms["pixel_loss"] + 3.0 * terms["foreground_loss"]
    assert float(terms["foreground_loss"]) > 0
    assert float(terms["loss"]) == pytest.approx(float(total), rel=1e-6)


def numpy_losses(truth, counts, masks, logits):
    """The loss in NumPy: each image's leaves matched to its first `count` steps by brute force over every
    assignment (the best total soft IoU), the mean of 1 - IoU over the pairs, the mean binary cross-entropy of
    the confidences against t < count, the mean over the pairs of the matched masks' per-pixel cross-entropy, and
    1 - the Dice of the first `count` steps' pixel-wise maximum with the union of the leaves."""
    match, stop, pixel, foreground = [], [], [], []
    for y, n, p, z in zip(truth, counts, masks, logits, strict=True):
        y, p = y.reshape(len(y), -1).astype(float), p.reshape(len(p), -1).astype(float)
        iou = np.array([[(a * b).sum() / (a + b - a * b).sum() for b in y[:n]] for a in p[:n]])
        order = max(itertools.permutations(range(n)), key=lambda o: iou[list(o), range(n)].sum())
        match.append(np.mean(1 - iou[list(order), range(n)]) if n else 0.0)
        q = np.clip(p[list(order)], 1e-7, 1 - 1e-7)
        pixel.append(np.mean(-(y[:n] * np.log(q) + (1 - y[:n]) * np.log(1 - q))) if n else 0.0)
        target = (np.arange(len(z)) < n).astype(float)
        sigma = 1 / (1 + np.exp(-z))
        stop.append(np.mean(-(target * np.log(sigma) + (1 - target) * np.log(1 - sigma))))
        union, plant = (p[:n].max(axis=0) if n else np.zeros(p.shape[1])), y.max(axis=0)
        both = union.sum() + plant.sum()
        foreground.append(1 - (2 * (union * plant).sum() / both if both else 1.0))
    return np.mean(match), np.mean(stop), np.mean(pixel), np.mean(foreground)


def hand_made_case():
    """Two images of 1 x 4 pixels, three steps, up to three leaves: the first has two leaves and the second three,
    and the second's predictions cross (its first step fits its second leaf best)."""
    truth = np.zeros((2, 3, 1, 4), "uint8")
    truth[0, 0, 0] = [1, 1, 0, 0]
    truth[0, 1, 0] = [0, 0, 1, 1]
    truth[1, 0, 0] = [1, 0, 0, 0]
    truth[1, 1, 0] = [0, 1, 0, 0]
    truth[1, 2, 0] = [0, 0, 1, 1]
    masks = np.array(
        [
            [[[0.9, 0.8, 0.1, 0.0]], [[0.1, 0.2, 0.7, 0.9]], [[0.5, 0.5, 0.5, 0.5]]],
            [[[0.2, 0.9, 0.1, 0.0]], [[0.8, 0.3, 0.0, 0.1]], [[0.0, 0.1, 0.6, 0.7]]],
        ],
        "float32",
    )
    logits = np.array([[2.0, 1.0, -1.5], [0.5, 3.0, -0.2]], "float32")
    return truth, np.array([2, 3], "int32"), masks, logits


def test_the_loss_is_the_numpy_computation_on_a_hand_made_case():
    truth, counts, masks, logits = hand_made_case()
    terms = recurrent_instance_losses(truth, counts, masks, logits)
    match, stop, pixel, foreground = numpy_losses(truth, counts, masks, logits)
    assert float(terms["match_loss"]) == pytest.approx(match, rel=1e-5)
    assert float(terms["foreground_loss"]) == pytest.approx(foreground, rel=1e-5)
    # By hand: image 0's union of its 2 steps is [0.9, 0.8, 0.7, 0.9] on all-plant pixels: Dice 2 x 3.3 / 7.3;
    # image 1's of its 3 steps [0.8, 0.9, 0.6, 0.7]: 2 x 3.0 / 7.0 (the third step of image 0 is not in its union).
    assert foreground == pytest.approx(1 - np.mean([6.6 / 7.3, 6.0 / 7.0]))
    assert float(terms["stop_loss"]) == pytest.approx(stop, rel=1e-5)
    assert float(terms["pixel_loss"]) == pytest.approx(pixel, rel=1e-5)
    # By hand: image 0 pairs step 0 with leaf 0 (soft IoU 1.7 / 2.1) and step 1 with leaf 1 (1.6 / 2.3); image 1's
    # best assignment crosses its first two steps.
    first = 1 - np.mean([1.7 / 2.1, 1.6 / 2.3])
    iou_crossed = [0.9 / 1.3, 0.8 / 1.4, 1.3 / 2.1]  # step 0 - leaf 1, step 1 - leaf 0, step 2 - leaf 2
    assert match == pytest.approx((first + 1 - np.mean(iou_crossed)) / 2)


def test_permuting_the_true_leaves_leaves_the_loss_unchanged():
    truth, counts, masks, logits = hand_made_case()
    terms = recurrent_instance_losses(truth, counts, masks, logits)
    permuted = truth.copy()
    permuted[1, :3] = truth[1, [2, 0, 1]]
    permuted[0, :2] = truth[0, [1, 0]]
    again = recurrent_instance_losses(permuted, counts, masks, logits)
    assert float(again["match_loss"]) == pytest.approx(float(terms["match_loss"]), rel=1e-6)
    assert float(again["pixel_loss"]) == pytest.approx(float(terms["pixel_loss"]), rel=1e-6)
    assert float(again["foreground_loss"]) == pytest.approx(float(terms["foreground_loss"]), rel=1e-6)
    assert float(again["stop_loss"]) == float(terms["stop_loss"])


def test_gradients_flow_to_every_weight_of_the_model():
    keras.utils.set_random_seed(0)
    trainer = RecurrentInstanceTrainer(recurrent_instance_segmenter(**TINY))
    rng = np.random.default_rng(0)
    images = rng.uniform(0, 1, (2, 16, 16, 3)).astype("float32")
    masks = np.zeros((2, 5, 16, 16), "uint8")
    masks[0, 0, 2:8, 2:8] = masks[0, 1, 9:14, 3:12] = masks[1, 0, 4:12, 4:12] = 1
    targets = {"masks": masks, "count": np.array([2, 1], "int32")}
    with tf.GradientTape() as tape:
        terms = trainer.losses_of(images, targets, training=True)
    gradients = tape.gradient(terms["loss"], trainer.trainable_variables)
    assert len(gradients) == len(trainer.segmenter.trainable_variables) == 4 * 2 + 3 + 4
    for variable, gradient in zip(trainer.trainable_variables, gradients, strict=True):
        assert gradient is not None and np.all(np.isfinite(gradient)), variable.path
        assert np.any(np.asarray(gradient) != 0), variable.path


def test_a_few_steps_of_training_lower_the_loss_on_one_batch():
    keras.utils.set_random_seed(0)
    trainer = RecurrentInstanceTrainer(recurrent_instance_segmenter(**TINY))
    trainer.compile(optimizer=keras.optimizers.Adam(1e-2))
    images = np.zeros((2, 16, 16, 3), "float32")
    masks = np.zeros((2, 4, 16, 16), "uint8")
    masks[0, 0, 2:8, 2:8] = masks[0, 1, 9:14, 3:12] = masks[1, 0, 4:12, 4:12] = 1
    images[..., 1] = masks.max(axis=1)  # the leaves are green
    targets = {"masks": masks, "count": np.array([2, 1], "int32")}
    first = trainer.test_on_batch(images, targets, return_dict=True)
    for _ in range(40):
        trainer.train_on_batch(images, targets)
    last = trainer.test_on_batch(images, targets, return_dict=True)
    # measured: 1.59 -> 0.88 (match 0.83 -> 0.75, stop 0.76 -> 0.13) on the paper's two terms
    assert last["loss"] < 0.6 * first["loss"], (first, last)
    assert last["stop_loss"] < 0.3 * first["stop_loss"] and last["match_loss"] < first["match_loss"]


def test_the_context_each_step_reads():
    """context=8: from step 2 on, the step's input ends with 8 channels holding at every position a ReLU of a
    dense layer of the previous state's global max pool; step 1's are zeros. Weights: the dense layer (32 + 1) 8
    and the ConvLSTM's kernel 3 x 3 x 8 x 128 more."""
    keras.utils.set_random_seed(0)
    plain = recurrent_instance_segmenter(input_shape=(32, 32, 3), max_instances=3)
    model = recurrent_instance_segmenter(input_shape=(32, 32, 3), max_instances=3, context=8)
    assert model.count_params() == plain.count_params() + (32 + 1) * 8 + 9 * 8 * 4 * 32
    images = np.random.default_rng(0).uniform(0, 1, (2, 32, 32, 3)).astype("float32")
    first = np.asarray(keras.Model(model.input, model.get_layer("step1_input").output)(images))
    second = np.asarray(keras.Model(model.input, model.get_layer("step2_input").output)(images))
    assert first.shape == second.shape == (2, 8, 8, 64 + 1 + 8)
    assert not first[..., -8:].any()
    summary = second[..., -8:]
    np.testing.assert_array_equal(summary, np.broadcast_to(summary[:, :1, :1], summary.shape))
    assert summary.min() >= 0 and summary.max() > 0
    with pytest.raises(ValueError, match="context must be a non-negative integer. Received: context=-1"):
        recurrent_instance_segmenter(context=-1)
