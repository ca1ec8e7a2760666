// Python bindings of the kernels. Nothing here trusts its caller: every shape, dtype,
// contiguity and label is checked before a kernel runs (std::invalid_argument -> ValueError,
// std::out_of_range -> IndexError).
#include <nanobind/nanobind.h>
#include <nanobind/ndarray.h>
#include <nanobind/stl/optional.h>

#include <optional>
#include <stdexcept>
#include <string>

#include "softmax_ce.hpp"

namespace nb = nanobind;
using namespace nb::literals;

namespace {

template <typename T>
using Matrix = nb::ndarray<T, nb::ndim<2>, nb::c_contig, nb::device::cpu>;
using Labels = nb::ndarray<const int64_t, nb::ndim<1>, nb::c_contig, nb::device::cpu>;
using Vector = nb::ndarray<double, nb::ndim<1>, nb::c_contig, nb::device::cpu>;
using ConstVector = nb::ndarray<const double, nb::ndim<1>, nb::c_contig, nb::device::cpu>;

void check_labels(const Labels& labels, int64_t n_rows, int64_t n_classes, bool has_ignore,
                  int64_t ignore_index) {
  if (static_cast<int64_t>(labels.shape(0)) != n_rows)
    throw std::invalid_argument("labels has " + std::to_string(labels.shape(0)) +
                                " entries, logits has " + std::to_string(n_rows) + " rows");
  const int64_t* y = labels.data();
  for (int64_t n = 0; n < n_rows; ++n) {
    if (has_ignore && y[n] == ignore_index) continue;
    if (y[n] < 0 || y[n] >= n_classes)
      throw std::out_of_range("labels[" + std::to_string(n) + "] = " + std::to_string(y[n]) +
                              " is outside [0, " + std::to_string(n_classes) + ")");
  }
}

template <typename T>
void softmax_ce_index(Matrix<const T> logits, Labels labels, std::optional<ConstVector> weight,
                      std::optional<int64_t> ignore_index, double label_smoothing, double z_loss,
                      double softcap, Vector loss_out, std::optional<Matrix<T>> grad,
                      double grad_scale) {
  const int64_t N = static_cast<int64_t>(logits.shape(0));
  const int64_t C = static_cast<int64_t>(logits.shape(1));
  if (C < 1) throw std::invalid_argument("logits must have at least one class");
  check_labels(labels, N, C, ignore_index.has_value(), ignore_index.value_or(0));
  if (static_cast<int64_t>(loss_out.shape(0)) != N)
    throw std::invalid_argument("loss_out must have one entry per row");
  if (grad && (static_cast<int64_t>(grad->shape(0)) != N ||
               static_cast<int64_t>(grad->shape(1)) != C))
    throw std::invalid_argument("grad must have the shape of logits");
  if (weight && static_cast<int64_t>(weight->shape(0)) != C)
    throw std::invalid_argument("weight must have one entry per class");
  if (!(label_smoothing >= 0.0 && label_smoothing <= 1.0))
    throw std::invalid_argument("label_smoothing must lie in [0, 1]");
  if (!(z_loss >= 0.0)) throw std::invalid_argument("z_loss must be >= 0");
  if (!(softcap >= 0.0)) throw std::invalid_argument("softcap must be > 0 (0 means none)");

  crossent::SoftmaxCEOptions opt;
  opt.weight = weight ? weight->data() : nullptr;
  opt.has_ignore = ignore_index.has_value();
  opt.ignore_index = ignore_index.value_or(0);
  opt.label_smoothing = label_smoothing;
  opt.z_loss = z_loss;
  opt.softcap = softcap;
  T* g = grad ? grad->data() : nullptr;
  nb::gil_scoped_release release;
  crossent::softmax_ce_index<T>(logits.data(), N, C, labels.data(), opt, loss_out.data(), g,
                                grad_scale);
}

}  // namespace

NB_MODULE(_ext, m) {
  m.doc() = "crossent compiled kernels (see crossent/_reference.py for the readable spec)";
  const char* doc =
      "Per-row softmax cross-entropy losses into loss_out and, when grad is given, "
      "grad_scale * d loss / d logits into grad.";
  m.def("softmax_ce_index", &softmax_ce_index<float>, "logits"_a, "labels"_a,
        "weight"_a.none(), "ignore_index"_a.none(), "label_smoothing"_a, "z_loss"_a,
        "softcap"_a, "loss_out"_a, "grad"_a.none(), "grad_scale"_a, doc);
  m.def("softmax_ce_index", &softmax_ce_index<double>, "logits"_a, "labels"_a,
        "weight"_a.none(), "ignore_index"_a.none(), "label_smoothing"_a, "z_loss"_a,
        "softcap"_a, "loss_out"_a, "grad"_a.none(), "grad_scale"_a, doc);
}
