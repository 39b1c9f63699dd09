"""Recurrent instance segmentation (Romera-Paredes & Torr, "Recurrent instance segmentation", ECCV 2016): an FCN
encoder feeds a convolutional LSTM that emits one instance a step (a leaf of a rosette), with the confidence that an
instance remains; inference stops at the first confidence below 0.5, so the steps taken are the count.

The graph, for an image (H, W, 3) and T = `max_instances` steps:

    encoder: blocks of two 3x3 convolutions + ReLU, 2x2 max pooling between blocks  -> features (H/s, W/s, C)
    step t: x_t = [features, canvas_t]  (the canvas: the union of the masks of steps < t, 0 at step 0)
            h_t, c_t = ConvLSTM(x_t, h_{t-1}, c_{t-1})                  (`kapps.layers.ConvLSTMCell`, shared)
            mask logits_t = 1x1 conv(h_t)                                (H/s, W/s, 1), shared
            confidence_t = sigmoid(dense(global max pool(h_t)))          shared
    masks: the T mask logits upsampled bilinearly by s to (H, W) and through a sigmoid      -> (T, H, W)
    stop: steps from the first confidence < 0.5 on zeroed; count = the steps kept (`kapps.layers.StopSequence`)

With `mask_stride=r` (r < s) a step's mask is decoded at a finer stride r from the encoder's own features there
(a U-Net-like skip, Ronneberger et al. 2015), as a small decoder does:

            d_t = ReLU(3x3 conv([h_t upsampled bilinearly by s / r, encoder features at stride r]))   shared
            mask logits_t = 1x1 conv(d_t)                                (H/r, W/r, 1)
            the canvas: the masks average-pooled by s / r back to the features' stride

so the LSTM can run at a coarse stride, where a step is cheap, while the masks keep the leaves' edges (at 64x64,
each rosette leaf's own mask average-pooled by 4 and upsampled back scores SBD 0.58 against the truth; by 2, 0.92).

With `context=K` each step also reads a global summary of the previous step's state, the same at every position:

            x_t = [features, canvas_t, spread(ReLU(dense_K(global max pool(h_{t-1}))))]   (zeros at step 1)

A 3x3 ConvLSTM passes news one cell a step, so without it the cells at one end of the plant cannot know which
leaf those at the other end are taking; with it every cell hears, one step late, what the state as a whole holds.
Measured on 64x64 rosettes of 1-20 leaves (T = 20, `mask_stride=2`, 4 epochs of 1,200, the rest as
`recipes/leaf_counting.py`): validation SBD 0.415 with `context=8`, 0.258 without.

The paper's heads are these (a 1x1 convolution for the mask and max pooling then a fully connected layer for the
confidence, its "spatial inhibition" module's outputs); its ConvLSTM reads the same features at every step and keeps
what it has segmented in its state. kapps also feeds back the union of the masks emitted so far (their pixel-wise
maximum, at the features' resolution), as Ren & Zemel ("End-to-end instance segmentation with recurrent
attention", CVPR 2017) keep a canvas: it tells each step which pixels are taken. `feedback=False` gives the paper's
form.

Export. The recurrence is a Python loop over the same layers, T copies of the cell in the functional graph: no
`tf.while_loop` (which TFLite's builtins refuse for Keras 3's recurrent layers), no ConvLSTM op (which TFLite does
not have and tf2onnx has converted wrongly; see `kapps.layers.conv_lstm`). Every op is a TFLite builtin and a plain
ONNX operator, and the outputs have fixed sizes, the stop applied as a mask.
"""

from __future__ import annotations

from collections.abc import Sequence

from kapps.layers.conv_lstm import ConvLSTMCell, SpreadVector, StopSequence, ZeroMaps
from kapps.losses import recurrent_instance_losses
from kapps.models._common import RELU_INIT
from kapps.models.vgg import vgg_block
from kapps.registry import register_model

import keras
import tensorflow as tf

OUTPUTS = ("masks", "confidences", "count")


def _parameters(*, channels: int, encoder_filters: Sequence[int], lstm_filters: int, kernel_size: int) -> str:
    """The parameter count in words, from the layer equations (the registry's `source`), with the paper's 1x1 mask
    head (no `mask_stride`)."""
    convs, previous = [], channels
    for filters in encoder_filters:
        convs += [9 * previous * filters + filters, 9 * filters * filters + filters]
        previous = filters
    inputs = previous + 1  # the features and the canvas
    lstm = kernel_size**2 * (inputs + lstm_filters) * 4 * lstm_filters + 4 * lstm_filters
    total = sum(convs) + lstm + 2 * (lstm_filters + 1)
    return (
        f"computed from the layer equations: encoder 3x3 convolutions with biases {' + '.join(map(str, convs))} = "
        f"{sum(convs):,}; ConvLSTM k^2 (C + F) 4F + 4F = {kernel_size}^2 ({inputs} + {lstm_filters}) "
        f"{4 * lstm_filters} + {4 * lstm_filters} = {lstm:,} (C = {previous} features + 1 canvas); 1x1 mask "
        f"head and dense confidence head {lstm_filters} + 1 each; total {total:,}"
    )


@register_model(
    task="instance_sequence",
    input_shape=(128, 128, 3),
    num_classes=1,
    param_count=184_018,
    source=_parameters(channels=3, encoder_filters=(16, 32, 64), lstm_filters=32, kernel_size=3),
)
def recurrent_instance_segmenter(
    *,
    input_shape: tuple[int, int, int] = (128, 128, 3),
    max_instances: int = 20,
    encoder_filters: Sequence[int] = (16, 32, 64),
    lstm_filters: int = 32,
    kernel_size: int = 3,
    feedback: bool = True,
    mask_stride: int | None = None,
    decoder_filters: int = 8,
    mask_bias: float = 0.0,
    context: int = 0,
    stop_threshold: float = 0.5,
    name: str = "recurrent_instance_segmenter",
) -> keras.Model:
    """An FCN encoder and a convolutional LSTM unrolled for `max_instances` steps, each emitting one instance mask
    and the confidence that an instance remains (Romera-Paredes & Torr 2016; see the module for the graph).

    Train it with `RecurrentInstanceTrainer` (the Hungarian-matched soft IoU plus the stopping loss); its outputs
    are what users run and what exports carry.

    Args:
        input_shape: (height, width, channels), height and width multiples of the encoder's stride
            2 ** (len(encoder_filters) - 1).
        max_instances: T, the steps unrolled: the most instances the model can find (20 leaves for CVPPP).
        encoder_filters: filters of each encoder block (two 3x3 convolutions + ReLU), with a 2x2 max pooling
            between blocks.
        lstm_filters: channels of the ConvLSTM's hidden and cell states.
        kernel_size: side of the ConvLSTM's kernels.
        feedback: feed the union of the masks emitted so far back into each step (see the module).
        mask_stride: None for the paper's 1x1 mask head on the LSTM's state; or r, a stride of the encoder below
            its last (2, ..., 2 ** (len(encoder_filters) - 2)): each step's mask is decoded at stride r from the
            state and the encoder's features there, block log2(r)'s pooled output (see the module). Adds
            9 (lstm_filters + C_r) D + D weights (C_r the features' channels at r, D `decoder_filters`) and gives
            the mask head D + 1 weights instead of lstm_filters + 1.
        decoder_filters: D, the channels of that decoder's 3x3 convolution.
        context: K, the channels of the previous state's global summary each step reads (see the module; 0: none).
            Adds (lstm_filters + 1) K weights for the dense layer and k^2 K 4 lstm_filters to the ConvLSTM's kernel.
        mask_bias: the mask head's initial bias: every mask starts near sigmoid(mask_bias) (see
            `RecurrentInstanceTrainer` for why -3 rather than 0).
        stop_threshold: the least confidence that goes on to the next instance (0.5 in the paper).
        name: model name.

    Returns:
        A functional `keras.Model` from `image (B, H, W, C)` in [0, 1] to `{"masks": (B, T, H, W) mask
        probabilities, zero from the stop on; "confidences": (B, T) the confidence of each step, as computed (not
        zeroed); "count": (B,) float32, the steps before the stop}`, all float32. The layers `"step_masks"` (masks
        before the stop) and `"step_confidence_logits"` (B, T) are what the training loss reads.
    """
    shape = tuple(input_shape)
    filters = tuple(encoder_filters)
    if not filters or not all(isinstance(f, int) and not isinstance(f, bool) and f > 0 for f in filters):
        raise ValueError(f"encoder_filters must be positive integers. Received: encoder_filters={encoder_filters!r}")
    stride = 2 ** (len(filters) - 1)
    if (
        len(shape) != 3
        or not all(isinstance(s, int) and s > 0 for s in shape)
        or shape[0] % stride
        or shape[1] % stride
    ):
        raise ValueError(
            f"input_shape must be (height, width, channels) with height and width multiples of {stride}. "
            f"Received: input_shape={input_shape!r}"
        )
    if not isinstance(max_instances, int) or isinstance(max_instances, bool) or max_instances < 1:
        raise ValueError(f"max_instances must be a positive integer. Received: max_instances={max_instances!r}")
    if not isinstance(lstm_filters, int) or isinstance(lstm_filters, bool) or lstm_filters < 1:
        raise ValueError(f"lstm_filters must be a positive integer. Received: lstm_filters={lstm_filters!r}")
    finer = [2**k for k in range(1, len(filters) - 1)]
    if mask_stride is not None and mask_stride not in finer:
        raise ValueError(
            f"mask_stride must be None or a stride of the encoder below its last, one of {finer}. "
            f"Received: mask_stride={mask_stride!r}"
        )
    if not isinstance(context, int) or isinstance(context, bool) or context < 0:
        raise ValueError(f"context must be a non-negative integer. Received: context={context!r}")
    if not isinstance(decoder_filters, int) or isinstance(decoder_filters, bool) or decoder_filters < 1:
        raise ValueError(f"decoder_filters must be a positive integer. Received: decoder_filters={decoder_filters!r}")

    image = keras.Input(shape, name="image")
    x = image
    skips = {}  # stride -> the encoder's features there (a block's pooled output)
    for block, width in enumerate(filters[:-1], 1):
        x = vgg_block(x, width, kernel_sizes=(3, 3), name=f"block{block}")
        skips[2**block] = x
    for i in (1, 2):
        x = keras.layers.Conv2D(
            filters[-1],
            3,
            padding="same",
            activation="relu",
            kernel_initializer=RELU_INIT,
            name=f"block{len(filters)}_conv{i}",
        )(x)
    features = x  # (B, H / stride, W / stride, C)

    cell = ConvLSTMCell(lstm_filters, kernel_size, name="conv_lstm")
    mask_head = keras.layers.Conv2D(1, 1, bias_initializer=keras.initializers.Constant(mask_bias), name="mask_head")
    pool = keras.layers.GlobalMaxPooling2D(name="state_pool")
    confidence_head = keras.layers.Dense(1, name="confidence_head")
    out_stride = stride if mask_stride is None else mask_stride
    if mask_stride is not None:
        factor = stride // mask_stride
        skip = skips[mask_stride]
        upsample = keras.layers.UpSampling2D(factor, interpolation="bilinear", name="state_upsampling")
        decoder = keras.layers.Conv2D(
            decoder_filters, 3, padding="same", activation="relu", kernel_initializer=RELU_INIT, name="mask_decoder"
        )
        shrink = keras.layers.AveragePooling2D(factor, name="canvas_pooling")
    if context:
        context_head = keras.layers.Dense(context, activation="relu", name="context_head")
    h = ZeroMaps(lstm_filters, name="initial_state")(features)
    c = h
    canvas = ZeroMaps(1, name="empty_canvas")(features) if feedback else None
    mask_logits, confidence_logits = [], []
    for t in range(1, max_instances + 1):
        inputs = [features, canvas] if feedback else [features]
        if context and t == 1:
            inputs.append(ZeroMaps(context, name="empty_context")(features))
        elif context:  # the previous state's global summary, at every position
            inputs.append(SpreadVector(name=f"step{t}_context")([context_head(pool(h)), features]))
        step = keras.layers.Concatenate(name=f"step{t}_input")(inputs) if len(inputs) > 1 else features
        h, c = cell([step, h, c])
        if mask_stride is None:
            logits = mask_head(h)
        else:
            logits = mask_head(decoder(keras.layers.Concatenate(name=f"step{t}_decoder_input")([upsample(h), skip])))
        mask_logits.append(logits)
        confidence_logits.append(confidence_head(pool(h)))
        if feedback and t < max_instances:
            mask = keras.layers.Activation("sigmoid", name=f"step{t}_mask")(logits)
            if mask_stride is not None:
                mask = shrink(mask)
            canvas = mask if t == 1 else keras.layers.Maximum(name=f"step{t}_canvas")([canvas, mask])

    # (B, H / r, W / r, T) -> (B, H, W, T) -> (B, T, H, W), r the masks' stride
    logits = _stack(mask_logits, name="step_mask_logits")
    if out_stride > 1:
        logits = keras.layers.UpSampling2D(out_stride, interpolation="bilinear", name="mask_upsampling")(logits)
    masks = keras.layers.Activation("sigmoid", dtype="float32", name="step_mask_probabilities")(logits)
    masks = keras.layers.Permute((3, 1, 2), dtype="float32", name="step_masks")(masks)
    confidence = _stack(confidence_logits, name="step_confidence_logits")  # (B, T)
    confidences = keras.layers.Activation("sigmoid", dtype="float32", name="confidences")(confidence)
    kept, count = StopSequence(stop_threshold, name="stop")(masks, confidences)
    return keras.Model(image, {"masks": kept, "confidences": confidences, "count": count}, name=name)


def _stack(tensors: list, *, name: str):
    """Per-step tensors with one last channel, side by side along it (one step needs no layer but a name)."""
    if len(tensors) == 1:
        return keras.layers.Identity(name=name)(tensors[0])
    return keras.layers.Concatenate(name=name)(tensors)


@keras.saving.register_keras_serializable(package="kapps")
class RecurrentInstanceTrainer(keras.Model):
    """Trains a `recurrent_instance_segmenter` on `recurrent_instance_losses`: `match_loss + stop_weight *
    stop_loss + pixel_weight * pixel_loss + foreground_weight * foreground_loss`, minimised by the compiled
    optimizer.

    The pixel term is not the paper's and is off by default (`pixel_weight=0`). Why it is offered: at the start
    every mask is near 0.5 everywhere and a leaf's soft IoU I / U is near 0.01, so its gradient is 1 / U on each
    leaf pixel and only -I / U^2 on each other pixel, and raising every pixel raises the IoU. Measured: on one
    batch of two images (16x16, 40 steps of Adam 1e-2) `match_loss` fell from 0.83 to 0.75 on the paper's terms
    and to 0.54 with `pixel_weight=1`; on 64x64 rosettes (6 epochs of 20 steps of 16, Adam 2e-3) neither lowered
    it within that budget: 0.989 to 0.987 on the paper's terms (the masks rose to 0.5-0.7 everywhere), 0.994
    with the pixel term (the masks fell to 0 everywhere, leaves being 2-5% of the pixels).

    What did make it learn, on 64x64 rosettes of 1-6 leaves (T = 8, batch 16, validation SBD of 100 rosettes): the
    paper's form reached SBD 0.02 to 0.08 in 4 epochs of 400 (match loss flat at 0.988); in 6 epochs of 800, the
    masks decoded at stride 2 (`mask_stride=2`) with the mask head's bias at -3 (`mask_bias`), so that masks start
    near 0.05 and the few leaf pixels carry the soft IoU, reached 0.46 (match loss 0.98 -> 0.68) at Adam 1e-3;
    adding the foreground term (`foreground_weight=1`) 0.51; at Adam 3e-3 with the gradient clipped to norm 1, 0.61;
    a pixel cross-entropy over every step (its matched leaf or nothing, leaf pixels weighted 10; an experiment's,
    not `pixel_loss`) did about as well as the foreground term (0.56 at 1e-3). At stride 4 the masks cannot reach
    the target at 64x64 at all: each leaf's own mask average-pooled by 4 and upsampled back scores SBD 0.58 (0.92 at
    stride 2). Matching the steps to the leaves in a fixed order (largest first) rather than by the Hungarian
    algorithm: 0.43 against 0.61.

    A step takes images and the targets of every instance source (`kapps.data.load_instances`): `{"masks": (B, N,
    H, W), "count": (B,), ...}`. The metrics are `loss` and its terms (`TERMS`). Calling the trainer runs the
    segmenter, whose weights it trains in place (`trainer.segmenter`).

    Args:
        segmenter: the model to train.
        stop_weight: the weight of the stopping loss (the paper's lambda).
        pixel_weight: the weight of the matched masks' per-pixel cross-entropy.
        foreground_weight: the weight of the Dice loss of the steps' union against the true foreground (see
            `kapps.losses.recurrent_instance_losses`).
    """

    TERMS = ("match_loss", "stop_loss", "pixel_loss", "foreground_loss")

    def __init__(
        self,
        segmenter: keras.Model,
        *,
        stop_weight: float = 1.0,
        pixel_weight: float = 0.0,
        foreground_weight: float = 0.0,
        **kwargs,
    ):
        kwargs.setdefault("name", f"{segmenter.name}_trainer")
        super().__init__(**kwargs)
        weights = {"stop_weight": stop_weight, "pixel_weight": pixel_weight, "foreground_weight": foreground_weight}
        for key, value in weights.items():
            if not isinstance(value, (int, float)) or isinstance(value, bool) or value < 0:
                raise ValueError(f"{key} must be a non-negative number. Received: {key}={value!r}")
        self.segmenter = segmenter
        self.stop_weight = float(stop_weight)
        self.pixel_weight = float(pixel_weight)
        self.foreground_weight = float(foreground_weight)
        self.steps = keras.Model(
            segmenter.input,
            {
                "masks": segmenter.get_layer("step_masks").output,
                "confidence_logits": segmenter.get_layer("step_confidence_logits").output,
            },
            name="steps",
        )
        self.trackers = {key: keras.metrics.Mean(name=key) for key in ("loss", *self.TERMS)}
        self.built = True  # every weight is the segmenter's, built with it

    def call(self, inputs, training=False):
        return self.segmenter(inputs, training=training)

    def compile(self, optimizer, **kwargs):
        super().compile(optimizer=optimizer, **kwargs)
        self.optimizer.build(self.trainable_variables)

    @property
    def metrics(self):
        return list(self.trackers.values())

    def losses_of(self, images, targets, *, training: bool) -> dict:
        """The loss terms and their weighted sum on one batch, as a dict of scalars."""
        outputs = self.steps(images, training=training)
        terms = recurrent_instance_losses(
            targets["masks"], targets["count"], outputs["masks"], outputs["confidence_logits"]
        )
        total = (
            terms["match_loss"]
            + self.stop_weight * terms["stop_loss"]
            + self.pixel_weight * terms["pixel_loss"]
            + self.foreground_weight * terms["foreground_loss"]
        )
        return {"loss": total, **terms}

    def train_step(self, data):
        images, targets = data[0], data[1]  # (x, y) from a dataset, (x, y, None) from train_on_batch
        # Each replica's loss is its share of the global batch's: a distribution strategy sums the replicas' gradients.
        replicas = tf.distribute.get_strategy().num_replicas_in_sync
        with tf.GradientTape() as tape:
            terms = self.losses_of(images, targets, training=True)
            scaled = self.optimizer.scale_loss(terms["loss"] / replicas)
        variables = self.trainable_variables
        self.optimizer.apply(tape.gradient(scaled, variables), variables)
        return self._update(terms)

    def test_step(self, data):
        return self._update(self.losses_of(data[0], data[1], training=False))

    def _update(self, terms: dict) -> dict:
        for key, value in terms.items():
            self.trackers[key].update_state(value)
        return {key: tracker.result() for key, tracker in self.trackers.items()}

    def get_config(self):
        return {
            **super().get_config(),
            "segmenter": keras.saving.serialize_keras_object(self.segmenter),
            "stop_weight": self.stop_weight,
            "pixel_weight": self.pixel_weight,
            "foreground_weight": self.foreground_weight,
        }

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["segmenter"] = keras.saving.deserialize_keras_object(config["segmenter"])
        return cls(**config)
