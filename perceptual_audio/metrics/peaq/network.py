"""The neural networks of ITU-R BS.1387-1 Annex 2 section 6: MOVs -> distortion index (DI)
-> objective difference grade (ODG), with the Recommendation's weights (Tables 13-16 for
the basic version, 18-21 for the advanced version)."""

from __future__ import annotations

import numpy as np

#: Basic version, Table 12 order of the network's inputs (Table 13).
BASIC_MOVS = (
    "BandwidthRefB", "BandwidthTestB", "TotalNMRB", "WinModDiff1B", "ADBB", "EHSB",
    "AvgModDiff1B", "AvgModDiff2B", "RmsNoiseLoudB", "MFPDB", "RelDistFramesB",
)  # fmt: skip
BASIC_A_MIN = np.array([393.916656, 361.965332, -24.045116, 1.110661, -0.206623, 0.074318,
                        1.113683, 0.950345, 0.029985, 0.000101, 0.0])  # fmt: skip
BASIC_A_MAX = np.array([921.0, 881.131226, 16.212030, 107.137772, 2.886017, 13.933351,
                        63.257874, 1145.018555, 14.819740, 1.0, 1.0])  # fmt: skip
#: Table 14: input weights (MOV x hidden node) and the hidden nodes' bias (last row).
BASIC_W_X = np.array([
    [-0.502657, 0.436333, 1.219602],
    [4.307481, 3.246017, 1.123743],
    [4.984241, -2.211189, -0.192096],
    [0.051056, -1.762424, 4.331315],
    [2.321580, 1.789971, -0.754560],
    [-5.303901, -3.452257, -10.814982],
    [2.730991, -6.111805, 1.519223],
    [0.624950, -1.331523, -5.955151],
    [3.102889, 0.871260, -5.922878],
    [-1.051468, -0.939882, -0.142913],
    [-1.804679, -0.503610, -0.620456],
    [-2.518254, 0.654841, -2.207228],
])  # fmt: skip
#: Table 15: output weights of the hidden nodes, then the output bias.
BASIC_W_Y = np.array([-3.817048, 4.107138, 4.629582, -0.307594])

#: Advanced version, Table 18 order.
ADVANCED_MOVS = ("RmsModDiffA", "RmsNoiseLoudAsymA", "SegmentalNMRB", "EHSB", "AvgLinDistA")
ADVANCED_A_MIN = np.array([13.298751, 0.041073, -25.018791, 0.061560, 0.024523])
ADVANCED_A_MAX = np.array([2166.5, 13.24326, 13.46708, 10.226771, 14.224874])
ADVANCED_W_X = np.array([
    [21.211773, -39.913052, -1.382553, -14.545348, -0.320899],
    [-8.981803, 19.956049, 0.935389, -1.686586, -3.238586],
    [1.633830, -2.877505, -7.442935, 5.606502, -1.783120],
    [6.103821, 19.587435, -0.240284, 1.088213, -0.511314],
    [11.556344, 3.892028, 9.720441, -3.287205, -11.031250],
    [1.330890, 2.686103, 2.096598, -1.327851, 3.087055],
])  # fmt: skip
ADVANCED_W_Y = np.array([-4.696996, -3.289959, 7.004782, 6.651897, 4.009144, -1.360308])

#: Table 16 / 21: ODG = b_min + (b_max - b_min) sig(DI).
B_MIN = -3.98
B_MAX = 0.22


def sigmoid(x: np.ndarray | float) -> np.ndarray:
    """The asymmetric sigmoid of eq. (94)."""
    return 1.0 / (1.0 + np.exp(-np.asarray(x, dtype=float)))


def distortion_index(
    movs: np.ndarray, a_min: np.ndarray, a_max: np.ndarray, w_x: np.ndarray, w_y: np.ndarray
) -> float:
    """DI of eq. (95) from the MOV vector (in the network's input order)."""
    scaled = (np.asarray(movs, dtype=float) - a_min) / (a_max - a_min)
    hidden = sigmoid(w_x[-1] + scaled @ w_x[:-1])
    return float(w_y[-1] + hidden @ w_y[:-1])


def odg(di: float) -> float:
    """ODG of eq. (96)."""
    return float(B_MIN + (B_MAX - B_MIN) * sigmoid(di))
