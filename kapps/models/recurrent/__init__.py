"""Recurrent builders: sequence models (a plain RNN, an LSTM or a GRU and a classification or regression head)."""

from kapps.models.recurrent import sequence
from kapps.models.recurrent.sequence import CELLS, cell_pair, gru_classifier, lstm_classifier, rnn_classifier

__all__ = ["CELLS", "cell_pair", "gru_classifier", "lstm_classifier", "rnn_classifier", "sequence"]
