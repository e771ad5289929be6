"""ONNX export of fitted fastmlp models, through skl2onnx.

Importing this module registers converters for :class:`fastmlp.MLPClassifier`
and :class:`fastmlp.MLPRegressor` with skl2onnx
(``skl2onnx.update_registered_converter``); after that,
``skl2onnx.to_onnx(model, X[:1])`` works on them, alone or inside a
scikit-learn pipeline::

    import fastmlp.onnx  # registers the converters
    import skl2onnx
    onx = skl2onnx.to_onnx(model, X[:1].astype(np.float32))

The graph is the network itself: one MatMul + Add per layer and the layer's
activation (Relu, Tanh, Sigmoid, LeakyRelu — Max(z, slope z) in float64 —
or nothing for 'identity'; each hidden layer its own), then the output: Softmax, Sigmoid, Exp or identity.
Float32 input gives a float32 graph, float64 input a float64 graph (the
weights are cast to the input's type).

Outputs, as skl2onnx gives them for scikit-learn's models:

- regressor: ``variable``, shape (N, n_outputs);
- classifier: ``label`` (int64 for integer or boolean classes, string for
  string classes; an (N, n_labels) int64 indicator for multilabel) and
  ``probabilities`` (N, n_classes), which skl2onnx wraps in a ZipMap unless
  ``options={'zipmap': False}``. With ``loss='hinge'`` there are no
  probabilities: the second output holds the network's raw scores, the
  values ``predict`` thresholds (``[-s, s]`` for a binary problem, so that
  its argmax is the label).

Pruned models: a ``coefs_`` entry that is a scipy.sparse matrix is written
out dense (ONNX Runtime has no general sparse MatMul).

skl2onnx and onnxruntime are optional: ``pip install 'fastmlp[onnx]'``.
"""

import numpy as np
import scipy.sparse as sp

try:
    from skl2onnx import update_registered_converter
    from skl2onnx.common.data_types import (DoubleTensorType, FloatTensorType,
                                            Int64TensorType, StringTensorType)
    from skl2onnx.common.utils_classifier import get_label_classes
    from skl2onnx.proto import onnx_proto
except ImportError as exc:  # pragma: no cover - exercised without skl2onnx
    raise ImportError(
        "fastmlp.onnx needs skl2onnx (and onnxruntime to run the models): "
        "pip install 'fastmlp[onnx]', or pip install skl2onnx onnxruntime."
    ) from exc

from ._classifier import MLPClassifier
from ._regressor import MLPRegressor

__all__ = ["register", "to_onnx"]

_ONNX_ACTIVATION = {"relu": "Relu", "tanh": "Tanh", "logistic": "Sigmoid",
                    "softmax": "Softmax", "exp": "Exp", "leaky_relu": "LeakyRelu"}


def _float_type(operator):
    """(skl2onnx tensor type, onnx element type, numpy dtype) of the graph."""
    if isinstance(operator.inputs[0].type, DoubleTensorType):
        return DoubleTensorType, onnx_proto.TensorProto.DOUBLE, np.float64
    return FloatTensorType, onnx_proto.TensorProto.FLOAT, np.float32


def _is_multilabel(model):
    return model._y_type == "multilabel-indicator"


def _label_classes(model):
    """classes_ as the label output carries them: int64 or str."""
    classes = np.asarray(model.classes_)
    if classes.dtype.kind in "biu":
        return classes.astype(np.int64)
    if classes.dtype.kind == "f":
        if not np.all(classes == np.round(classes)):
            raise ValueError(
                f"ONNX labels are int64 or strings; classes {classes.tolist()} are "
                "non-integer floats. Refit with integer or string labels."
            )
        return classes.astype(np.int64)
    return classes.astype(str)


# ------------------------------------------------------------ shape calculators
def _classifier_shapes(operator):
    model = operator.raw_operator
    N = operator.inputs[0].get_first_dimension()
    ftype, _, _ = _float_type(operator)
    n_cols = len(model.classes_)
    if _is_multilabel(model):
        label = Int64TensorType([N, n_cols])
    else:
        classes = get_label_classes(operator.scope_inst, model)
        if np.asarray(classes).dtype.kind in "OUS":
            label = StringTensorType([N])
        else:
            label = Int64TensorType([N])
    operator.outputs[0].type = label
    operator.outputs[1].type = ftype([N, n_cols])


def _regressor_shapes(operator):
    N = operator.inputs[0].get_first_dimension()
    ftype, _, _ = _float_type(operator)
    operator.outputs[0].type = ftype([N, operator.raw_operator.n_outputs_])


# ------------------------------------------------------------------ converters
def _add_const(scope, container, name, elem_type, values):
    values = np.asarray(values)
    var = scope.get_unique_variable_name(name)
    container.add_initializer(var, elem_type, list(values.shape),
                              values.ravel().tolist())
    return var


def _node(scope, container, op_type, inputs, name=None, **attrs):
    out = scope.get_unique_variable_name(name or op_type.lower())
    container.add_node(op_type, inputs, out, name=scope.get_unique_operator_name(op_type),
                       **attrs)
    return out


def _network(scope, operator, container):
    """The forward pass; returns the output layer's activations."""
    model = operator.raw_operator
    _, elem, dtype = _float_type(operator)
    a = _node(scope, container, "Cast", [operator.inputs[0].full_name], "input", to=elem)
    acts = model._layout.activations
    for l, (W, b) in enumerate(zip(model.coefs_, model.intercepts_)):
        W = W.toarray() if sp.issparse(W) else np.asarray(W)
        w = _add_const(scope, container, f"coef{l}", elem, W.astype(dtype))
        bias = _add_const(scope, container, f"intercept{l}", elem,
                          np.asarray(b, dtype=dtype).reshape(1, -1))
        z = _node(scope, container, "MatMul", [a, w], f"matmul{l}")
        a = _node(scope, container, "Add", [z, bias], f"z{l}")
        act = acts[l]
        if act == "identity":
            continue
        attrs = {}
        if act == "leaky_relu" and dtype is np.float64:
            # ONNX Runtime has LeakyRelu for float32 only: max(z, slope z),
            # the same function for 0 <= slope < 1.
            slope = _add_const(scope, container, "slope", elem,
                               np.array([model.negative_slope], dtype))
            scaled = _node(scope, container, "Mul", [a, slope], f"scaled{l}")
            a = _node(scope, container, "Max", [a, scaled], f"a{l}")
            continue
        if act == "leaky_relu":
            attrs["alpha"] = float(model.negative_slope)
        elif act == "softmax":
            attrs["axis"] = 1
        a = _node(scope, container, _ONNX_ACTIVATION[act], [a], f"a{l}", **attrs)
    return a


def _convert_classifier(scope, operator, container):
    model = operator.raw_operator
    _, elem, dtype = _float_type(operator)
    label_out, proba_out = operator.outputs[0].full_name, operator.outputs[1].full_name
    out = _network(scope, operator, container)
    threshold = 0.0 if model.out_activation_ == "identity" else 0.5
    i64 = onnx_proto.TensorProto.INT64

    if _is_multilabel(model):
        container.add_node("Identity", [out], proba_out,
                           name=scope.get_unique_operator_name("Identity"))
        thr = _add_const(scope, container, "threshold", elem, np.array([threshold], dtype))
        above = _node(scope, container, "Greater", [out, thr], "above")
        container.add_node("Cast", [above], label_out, to=i64,
                           name=scope.get_unique_operator_name("Cast"))
        return

    if model.n_outputs_ == 1:  # binary: one logistic (or hinge score) column
        if threshold == 0.5:
            one = _add_const(scope, container, "one", elem, np.array([1.0], dtype))
            other = _node(scope, container, "Sub", [one, out], "negative_class")
        else:
            other = _node(scope, container, "Neg", [out], "negative_score")
        container.add_node("Concat", [other, out], proba_out, axis=1,
                           name=scope.get_unique_operator_name("Concat"))
        thr = _add_const(scope, container, "threshold", elem, np.array([threshold], dtype))
        above = _node(scope, container, "Greater", [out, thr], "above")
        index = _node(scope, container, "Cast", [above], "index2d", to=i64)
        shape = _add_const(scope, container, "shape", i64, np.array([-1], np.int64))
        index = _node(scope, container, "Reshape", [index, shape], "index")
    else:
        container.add_node("Identity", [out], proba_out,
                           name=scope.get_unique_operator_name("Identity"))
        index = _node(scope, container, "ArgMax", [out], "index", axis=1, keepdims=0)

    if container.get_options(model, dict(nocl=False))["nocl"]:
        container.add_node("Identity", [index], label_out,
                           name=scope.get_unique_operator_name("Identity"))
        return
    classes = _label_classes(model)
    if classes.dtype.kind == "U":
        table = _add_const(scope, container, "classes", onnx_proto.TensorProto.STRING,
                           np.array([c.encode("utf-8") for c in classes], dtype=object))
    else:
        table = _add_const(scope, container, "classes", i64, classes)
    container.add_node("Gather", [table, index], label_out, axis=0,
                       name=scope.get_unique_operator_name("Gather"))


def _convert_regressor(scope, operator, container):
    out = _network(scope, operator, container)
    container.add_node("Identity", [out], operator.outputs[0].full_name,
                       name=scope.get_unique_operator_name("Identity"))


# ---------------------------------------------------------------- registration
def register():
    """Register fastmlp's converters with skl2onnx (done on import)."""
    update_registered_converter(
        MLPClassifier, "FastmlpMLPClassifier", _classifier_shapes, _convert_classifier,
        options={"zipmap": [True, False, "columns"], "nocl": [True, False],
                 "output_class_labels": [False, True]})
    update_registered_converter(
        MLPRegressor, "FastmlpMLPRegressor", _regressor_shapes, _convert_regressor)


def to_onnx(model, X, **kwargs):
    """``skl2onnx.to_onnx(model, X, **kwargs)``, with the converters registered.

    Parameters
    ----------
    model : fitted MLPClassifier, MLPRegressor, or a pipeline holding one.
    X : ndarray
        A sample of the input (one row is enough): its dtype (float32 or
        float64) and width set the graph's input type.
    **kwargs : passed to skl2onnx.to_onnx (options, target_opset, ...).

    Returns
    -------
    onnx.ModelProto
    """
    import skl2onnx

    register()
    return skl2onnx.to_onnx(model, X, **kwargs)


register()
