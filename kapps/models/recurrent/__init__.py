"""Recurrent builders: sequence models (a plain RNN, an LSTM or a GRU and a classification or regression head), and
recurrent instance segmentation (a ConvLSTM that emits one instance mask a step and when to stop)."""

from kapps.models.recurrent import instance_segmenter, sequence
from kapps.models.recurrent.instance_segmenter import RecurrentInstanceTrainer, recurrent_instance_segmenter
from kapps.models.recurrent.sequence import CELLS, cell_pair, gru_classifier, lstm_classifier, rnn_classifier

__all__ = [
    "CELLS",
    "RecurrentInstanceTrainer",
    "cell_pair",
    "gru_classifier",
    "instance_segmenter",
    "lstm_classifier",
    "recurrent_instance_segmenter",
    "rnn_classifier",
    "sequence",
]
