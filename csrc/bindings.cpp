// Python bindings of the kernels. Nothing here trusts its caller: every shape, dtype,
// contiguity and label is checked before a kernel runs (std::invalid_argument -> ValueError,
// std::out_of_range -> IndexError; an array of the wrong dtype, rank or layout is a TypeError
// from nanobind: arguments are never converted, so an output is never a hidden copy).
#include <nanobind/nanobind.h>
#include <nanobind/ndarray.h>
#include <nanobind/stl/optional.h>
#include <nanobind/stl/string.h>

#include <cmath>
#include <optional>
#include <stdexcept>
#include <string>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "binary.hpp"
#include "distill.hpp"
#include "softmax_ce.hpp"
#include "softmax_misc.hpp"

namespace nb = nanobind;
using namespace nb::literals;

namespace {

template <typename T>
using Matrix = nb::ndarray<T, nb::ndim<2>, nb::c_contig, nb::device::cpu>;
template <typename T>
using Flat = nb::ndarray<T, nb::ndim<1>, nb::c_contig, nb::device::cpu>;
using Labels = Flat<const int64_t>;
using Vector = Flat<double>;
using ConstVector = Flat<const double>;

template <typename A>
int64_t dim(const A& a, size_t i) { return static_cast<int64_t>(a.shape(i)); }

void check_labels(const Labels& labels, int64_t n_rows, int64_t n_classes, bool has_ignore,
                  int64_t ignore_index) {
  if (dim(labels, 0) != n_rows)
    throw std::invalid_argument("labels has " + std::to_string(dim(labels, 0)) +
                                " entries, logits has " + std::to_string(n_rows) + " rows");
  const int64_t* y = labels.data();
  for (int64_t n = 0; n < n_rows; ++n) {
    if (has_ignore && y[n] == ignore_index) continue;
    if (y[n] < 0 || y[n] >= n_classes)
      throw std::out_of_range("labels[" + std::to_string(n) + "] = " + std::to_string(y[n]) +
                              " is outside [0, " + std::to_string(n_classes) + ")");
  }
}

int64_t check_rows(int64_t C, const char* name) {
  if (C < 1) throw std::invalid_argument(std::string(name) + " must have at least one class");
  return C;
}

void check_loss_out(const Vector& loss_out, int64_t n) {
  if (dim(loss_out, 0) != n)
    throw std::invalid_argument("loss_out has " + std::to_string(dim(loss_out, 0)) +
                                " entries, expected " + std::to_string(n));
}

template <typename T>
T* check_grad(std::optional<Matrix<T>>& grad, int64_t N, int64_t C) {
  if (!grad) return nullptr;
  if (dim(*grad, 0) != N || dim(*grad, 1) != C)
    throw std::invalid_argument("grad has shape (" + std::to_string(dim(*grad, 0)) + ", " +
                                std::to_string(dim(*grad, 1)) + "), the logits (" +
                                std::to_string(N) + ", " + std::to_string(C) + ")");
  return grad->data();
}

const double* check_class_vector(const std::optional<ConstVector>& v, int64_t C,
                                  const char* name) {
  if (!v) return nullptr;
  if (dim(*v, 0) != C)
    throw std::invalid_argument(std::string(name) + " has " + std::to_string(dim(*v, 0)) +
                                " entries, expected one per class (" + std::to_string(C) + ")");
  return v->data();
}

void check_range(double v, double lo, double hi, const char* name) {
  if (!(v >= lo && v <= hi))
    throw std::invalid_argument(std::string(name) + " = " + std::to_string(v) +
                                " is outside [" + std::to_string(lo) + ", " +
                                std::to_string(hi) + "]");
}

crossent::SoftmaxCEOptions softmax_options(const std::optional<ConstVector>& weight, int64_t C,
                                           double label_smoothing, double z_loss,
                                           double softcap) {
  check_range(label_smoothing, 0.0, 1.0, "label_smoothing");
  check_range(z_loss, 0.0, HUGE_VAL, "z_loss");
  check_range(softcap, 0.0, HUGE_VAL, "softcap (0 means none)");
  crossent::SoftmaxCEOptions opt;
  opt.weight = check_class_vector(weight, C, "weight");
  opt.label_smoothing = label_smoothing;
  opt.z_loss = z_loss;
  opt.softcap = softcap;
  return opt;
}

template <typename T>
void softmax_ce_index(Matrix<const T> logits, Labels labels, std::optional<ConstVector> weight,
                      std::optional<int64_t> ignore_index, double label_smoothing, double z_loss,
                      double softcap, Vector loss_out, std::optional<Matrix<T>> grad,
                      double grad_scale) {
  const int64_t N = dim(logits, 0);
  const int64_t C = check_rows(dim(logits, 1), "logits");
  crossent::SoftmaxCEOptions opt = softmax_options(weight, C, label_smoothing, z_loss, softcap);
  check_labels(labels, N, C, ignore_index.has_value(), ignore_index.value_or(0));
  check_loss_out(loss_out, N);
  T* g = check_grad(grad, N, C);
  opt.has_ignore = ignore_index.has_value();
  opt.ignore_index = ignore_index.value_or(0);
  nb::gil_scoped_release release;
  crossent::softmax_ce_index<T>(logits.data(), N, C, labels.data(), opt, loss_out.data(), g,
                                grad_scale);
}

template <typename T>
void softmax_ce_dense(Matrix<const T> logits, Matrix<const double> targets,
                      std::optional<ConstVector> weight, double label_smoothing, double z_loss,
                      double softcap, Vector loss_out, std::optional<Matrix<T>> grad,
                      double grad_scale) {
  const int64_t N = dim(logits, 0);
  const int64_t C = check_rows(dim(logits, 1), "logits");
  const crossent::SoftmaxCEOptions opt =
      softmax_options(weight, C, label_smoothing, z_loss, softcap);
  if (dim(targets, 0) != N || dim(targets, 1) != C)
    throw std::invalid_argument("targets must have the shape of logits");
  check_loss_out(loss_out, N);
  T* g = check_grad(grad, N, C);
  nb::gil_scoped_release release;
  crossent::softmax_ce_dense<T>(logits.data(), N, C, targets.data(), opt, loss_out.data(), g,
                                grad_scale);
}

template <typename T>
void nll(Matrix<const T> log_probs, Labels labels, std::optional<ConstVector> weight,
         std::optional<int64_t> ignore_index, Vector loss_out, std::optional<Matrix<T>> grad,
         double grad_scale) {
  const int64_t N = dim(log_probs, 0);
  const int64_t C = check_rows(dim(log_probs, 1), "log_probs");
  const double* w = check_class_vector(weight, C, "weight");
  check_labels(labels, N, C, ignore_index.has_value(), ignore_index.value_or(0));
  check_loss_out(loss_out, N);
  T* g = check_grad(grad, N, C);
  nb::gil_scoped_release release;
  crossent::nll<T>(log_probs.data(), N, C, labels.data(), w, ignore_index.has_value(),
                   ignore_index.value_or(0), loss_out.data(), g, grad_scale);
}

template <typename T>
void softmax_focal(Matrix<const T> logits, Labels labels, std::optional<ConstVector> alpha,
                   double gamma, std::optional<int64_t> ignore_index, Vector loss_out,
                   std::optional<Matrix<T>> grad, double grad_scale) {
  const int64_t N = dim(logits, 0);
  const int64_t C = check_rows(dim(logits, 1), "logits");
  const double* a = check_class_vector(alpha, C, "alpha");
  check_range(gamma, 0.0, HUGE_VAL, "gamma");
  check_labels(labels, N, C, ignore_index.has_value(), ignore_index.value_or(0));
  check_loss_out(loss_out, N);
  T* g = check_grad(grad, N, C);
  nb::gil_scoped_release release;
  crossent::softmax_focal<T>(logits.data(), N, C, labels.data(), a, gamma,
                             ignore_index.has_value(), ignore_index.value_or(0), loss_out.data(),
                             g, grad_scale);
}

// Element-wise losses: every array is flat with the input's n elements.
int64_t check_flat(int64_t n, const ConstVector& targets, const Vector& loss_out) {
  if (dim(targets, 0) != n)
    throw std::invalid_argument("targets has " + std::to_string(dim(targets, 0)) +
                                " elements, expected " + std::to_string(n));
  check_loss_out(loss_out, n);
  return n;
}

const double* check_elementwise(const std::optional<ConstVector>& v, int64_t n,
                                const char* name) {
  if (!v) return nullptr;
  if (dim(*v, 0) != n)
    throw std::invalid_argument(std::string(name) + " has " + std::to_string(dim(*v, 0)) +
                                " elements, expected " + std::to_string(n));
  return v->data();
}

template <typename T>
T* check_flat_grad(std::optional<Flat<T>>& grad, int64_t n) {
  if (!grad) return nullptr;
  if (dim(*grad, 0) != n)
    throw std::invalid_argument("grad has " + std::to_string(dim(*grad, 0)) +
                                " elements, expected " + std::to_string(n));
  return grad->data();
}

template <typename T>
void sigmoid_bce(Flat<const T> logits, ConstVector targets, std::optional<ConstVector> weight,
                 std::optional<ConstVector> pos_weight, double label_smoothing, Vector loss_out,
                 std::optional<Flat<T>> grad, double grad_scale) {
  const int64_t n = check_flat(dim(logits, 0), targets, loss_out);
  const double* w = check_elementwise(weight, n, "weight");
  const double* pw = check_elementwise(pos_weight, n, "pos_weight");
  check_range(label_smoothing, 0.0, 1.0, "label_smoothing");
  T* g = check_flat_grad(grad, n);
  nb::gil_scoped_release release;
  crossent::sigmoid_bce<T>(logits.data(), n, targets.data(), w, pw, label_smoothing,
                           loss_out.data(), g, grad_scale);
}

template <typename T>
void bce(Flat<const T> probs, ConstVector targets, std::optional<ConstVector> weight,
         Vector loss_out, std::optional<Flat<T>> grad, double grad_scale) {
  const int64_t n = check_flat(dim(probs, 0), targets, loss_out);
  const double* w = check_elementwise(weight, n, "weight");
  T* g = check_flat_grad(grad, n);
  nb::gil_scoped_release release;
  crossent::bce<T>(probs.data(), n, targets.data(), w, loss_out.data(), g, grad_scale);
}

template <typename T>
void sigmoid_focal(Flat<const T> logits, ConstVector targets, std::optional<double> alpha,
                   double gamma, Vector loss_out, std::optional<Flat<T>> grad,
                   double grad_scale) {
  const int64_t n = check_flat(dim(logits, 0), targets, loss_out);
  if (alpha) check_range(*alpha, 0.0, 1.0, "alpha");
  check_range(gamma, 0.0, HUGE_VAL, "gamma");
  T* g = check_flat_grad(grad, n);
  nb::gil_scoped_release release;
  crossent::sigmoid_focal<T>(logits.data(), n, targets.data(), alpha.has_value(),
                             alpha.value_or(0.0), gamma, loss_out.data(), g, grad_scale);
}

void set_num_threads(int n) {
  if (n < 1) throw std::invalid_argument("n must be >= 1, got " + std::to_string(n));
#ifdef _OPENMP
  omp_set_num_threads(n);
#endif
}

int get_num_threads() {
#ifdef _OPENMP
  return omp_get_max_threads();
#else
  return 1;
#endif
}

template <typename T>
void normalize_rows(Matrix<const T> x, std::optional<Vector> lse_out,
                    std::optional<Matrix<T>> out, bool log_space) {
  const int64_t N = dim(x, 0), C = check_rows(dim(x, 1), "x");
  if (lse_out) check_loss_out(*lse_out, N);
  T* o = nullptr;
  if (out) {
    if (dim(*out, 0) != N || dim(*out, 1) != C)
      throw std::invalid_argument("out must have the shape of x");
    o = out->data();
  }
  nb::gil_scoped_release release;
  crossent::normalize_rows<T>(x.data(), N, C, lse_out ? lse_out->data() : nullptr, o, log_space);
}

template <typename T>
void softmax_divergence(Matrix<const T> logits, Matrix<const T> target_logits, int kind,
                        double beta, double temperature, double hard_weight,
                        std::optional<Flat<const uint8_t>> where, std::optional<Labels> labels,
                        Vector loss_out, std::optional<Matrix<T>> grad, double grad_scale) {
  const int64_t N = dim(logits, 0);
  const int64_t C = check_rows(dim(logits, 1), "logits");
  if (dim(target_logits, 0) != N || dim(target_logits, 1) != C)
    throw std::invalid_argument("target_logits must have the shape of logits");
  if (kind < 0 || kind > 2) throw std::invalid_argument("kind must be 0, 1 or 2");
  if (kind == 2 && !(beta > 0.0 && beta < 1.0))
    throw std::invalid_argument("beta = " + std::to_string(beta) + " is outside (0, 1)");
  if (!(temperature > 0.0 && temperature < HUGE_VAL))
    throw std::invalid_argument("temperature must be positive and finite");
  check_range(hard_weight, 0.0, 1.0, "hard_weight");
  crossent::DivergenceOptions opt;
  opt.kind = static_cast<crossent::Divergence>(kind);
  opt.beta = beta;
  opt.temperature = temperature;
  opt.hard_weight = hard_weight;
  if (where) {
    if (dim(*where, 0) != N)
      throw std::invalid_argument("where has " + std::to_string(dim(*where, 0)) +
                                  " entries, logits has " + std::to_string(N) + " rows");
    opt.where = where->data();
  }
  if (hard_weight > 0.0) {
    if (!labels) throw std::invalid_argument("hard_weight > 0 needs labels");
    if (dim(*labels, 0) != N)
      throw std::invalid_argument("labels has " + std::to_string(dim(*labels, 0)) +
                                  " entries, logits has " + std::to_string(N) + " rows");
    const int64_t* y = labels->data();
    for (int64_t n = 0; n < N; ++n) {
      if (opt.where && !opt.where[n]) continue;
      if (y[n] < 0 || y[n] >= C)
        throw std::out_of_range("labels[" + std::to_string(n) + "] = " + std::to_string(y[n]) +
                                " is outside [0, " + std::to_string(C) + ")");
    }
    opt.labels = y;
  }
  check_loss_out(loss_out, N);
  T* g = check_grad(grad, N, C);
  // the gradient may replace the logits, but never overlap the target logits it still reads
  if (g && g < target_logits.data() + N * C && target_logits.data() < g + N * C)
    throw std::invalid_argument("grad overlaps target_logits");
  nb::gil_scoped_release release;
  crossent::softmax_divergence<T>(logits.data(), target_logits.data(), N, C, opt,
                                  loss_out.data(), g, grad_scale);
}

std::string simd_level() {
#if defined(__x86_64__) && defined(__GNUC__)
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f")) return "avx512f";
  if (__builtin_cpu_supports("avx2")) return "avx2";
#endif
  return "baseline";
}

template <typename T>
void define_all(nb::module_& m) {
  m.def("softmax_ce_index", &softmax_ce_index<T>, "logits"_a.noconvert(),
        "labels"_a.noconvert(), "weight"_a.noconvert().none(), "ignore_index"_a.none(),
        "label_smoothing"_a, "z_loss"_a, "softcap"_a, "loss_out"_a.noconvert(),
        "grad"_a.noconvert().none(), "grad_scale"_a,
        "Per-row softmax cross-entropy of class indices into loss_out and, when grad is given, "
        "grad_scale * d loss / d logits into grad (which may be logits itself).");
  m.def("softmax_ce_dense", &softmax_ce_dense<T>, "logits"_a.noconvert(),
        "targets"_a.noconvert(), "weight"_a.noconvert().none(), "label_smoothing"_a,
        "z_loss"_a, "softcap"_a, "loss_out"_a.noconvert(), "grad"_a.noconvert().none(),
        "grad_scale"_a, "Per-row softmax cross-entropy of float64 target distributions.");
  m.def("nll", &nll<T>, "log_probs"_a.noconvert(), "labels"_a.noconvert(),
        "weight"_a.noconvert().none(), "ignore_index"_a.none(), "loss_out"_a.noconvert(),
        "grad"_a.noconvert().none(), "grad_scale"_a, "Per-row negative log-likelihood.");
  m.def("softmax_focal", &softmax_focal<T>, "logits"_a.noconvert(), "labels"_a.noconvert(),
        "alpha"_a.noconvert().none(), "gamma"_a, "ignore_index"_a.none(),
        "loss_out"_a.noconvert(), "grad"_a.noconvert().none(), "grad_scale"_a,
        "Per-row softmax focal loss.");
  m.def("sigmoid_bce", &sigmoid_bce<T>, "logits"_a.noconvert(), "targets"_a.noconvert(),
        "weight"_a.noconvert().none(), "pos_weight"_a.noconvert().none(), "label_smoothing"_a,
        "loss_out"_a.noconvert(), "grad"_a.noconvert().none(), "grad_scale"_a,
        "Element-wise binary cross-entropy of logits (flat arrays).");
  m.def("bce", &bce<T>, "probs"_a.noconvert(), "targets"_a.noconvert(),
        "weight"_a.noconvert().none(), "loss_out"_a.noconvert(), "grad"_a.noconvert().none(),
        "grad_scale"_a, "Element-wise binary cross-entropy of probabilities (flat arrays).");
  m.def("normalize_rows", &normalize_rows<T>, "x"_a.noconvert(), "lse_out"_a.noconvert().none(),
        "out"_a.noconvert().none(), "log_space"_a,
        "Per row of x: logsumexp into lse_out, and softmax (or log_softmax when log_space) "
        "into out (which may be x itself).");
  m.def("sigmoid_focal", &sigmoid_focal<T>, "logits"_a.noconvert(), "targets"_a.noconvert(),
        "alpha"_a.none(), "gamma"_a, "loss_out"_a.noconvert(), "grad"_a.noconvert().none(),
        "grad_scale"_a, "Element-wise sigmoid focal loss (flat arrays).");
  m.def("softmax_divergence", &softmax_divergence<T>, "logits"_a.noconvert(),
        "target_logits"_a.noconvert(), "kind"_a, "beta"_a, "temperature"_a, "hard_weight"_a,
        "where"_a.noconvert().none(), "labels"_a.noconvert().none(), "loss_out"_a.noconvert(),
        "grad"_a.noconvert().none(), "grad_scale"_a,
        "Per-row divergence (0 forward KL, 1 reverse KL, 2 JSD) of softmax(logits / T) from "
        "softmax(target_logits / T), mixed with the hard cross-entropy, and its gradient.");
}

}  // namespace

NB_MODULE(_ext, m) {
  m.doc() = "crossent compiled kernels (see crossent/_reference.py for the readable spec)";
  define_all<float>(m);
  define_all<double>(m);
  m.def("set_num_threads", &set_num_threads, "n"_a, "Threads used by the kernels (OpenMP).");
  m.def("get_num_threads", &get_num_threads, "Threads the kernels will use.");
  m.def("simd_level", &simd_level, "The widest SIMD level this CPU offers the kernels.");
}
