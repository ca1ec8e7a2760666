// Python bindings of the kernels. Nothing here trusts its caller: every shape, dtype,
// contiguity and label is checked before a kernel runs (std::invalid_argument -> ValueError,
// std::out_of_range -> IndexError; an array of the wrong dtype, rank or layout is a TypeError
// from nanobind: arguments are never converted, so an output is never a hidden copy).
#include <nanobind/nanobind.h>
#include <nanobind/ndarray.h>
#include <nanobind/stl/optional.h>
#include <nanobind/stl/pair.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/vector.h>

#include <cmath>
#include <optional>
#include <utility>
#include <vector>
#include <stdexcept>
#include <string>
#include <type_traits>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "distill.hpp"
#include "kernel_table.hpp"
#include "score.hpp"

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

// The kernels of the active SIMD level for logits of type T and targets of type TT.
template <typename T, typename TT>
const crossent::DenseTargetKernels<T, TT>& dense_target_kernels() {
  const auto& k = crossent::kernels_for<T>();
  if constexpr (std::is_same_v<TT, float>)
    return k.targets_f32;
  else
    return k.targets_f64;
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
  const auto& k = crossent::kernels_for<T>();
  nb::gil_scoped_release release;
  k.softmax_ce_index(logits.data(), N, C, labels.data(), opt, loss_out.data(), g,
                                grad_scale);
}

template <typename T, typename TT>
int64_t softmax_ce_dense(Matrix<const T> logits, Matrix<const TT> targets,
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
  const auto& k = dense_target_kernels<T, TT>();
  nb::gil_scoped_release release;
  return k.softmax_ce_dense(logits.data(), N, C, targets.data(), opt, loss_out.data(), g,
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
  const auto& k = crossent::kernels_for<T>();
  nb::gil_scoped_release release;
  k.nll(log_probs.data(), N, C, labels.data(), w, ignore_index.has_value(),
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
  const auto& k = crossent::kernels_for<T>();
  nb::gil_scoped_release release;
  k.softmax_focal(logits.data(), N, C, labels.data(), a, gamma, ignore_index.has_value(),
                  ignore_index.value_or(0), loss_out.data(), g, grad_scale);
}

// Element-wise losses: every array is flat with the input's n elements. Each returns the sum
// of the losses; loss_out (optional) receives them one by one.

template <typename TT>
int64_t check_flat(int64_t n, const Flat<const TT>& targets, const std::optional<Vector>& loss_out) {
  if (dim(targets, 0) != n)
    throw std::invalid_argument("targets has " + std::to_string(dim(targets, 0)) +
                                " elements, expected " + std::to_string(n));
  if (loss_out) check_loss_out(*loss_out, n);
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

template <typename T, typename TT>
std::pair<double, int64_t> sigmoid_bce(Flat<const T> logits, Flat<const TT> targets,
                   std::optional<ConstVector> weight, std::optional<ConstVector> pos_weight,
                   double label_smoothing, std::optional<Vector> loss_out,
                   std::optional<Flat<T>> grad, double grad_scale) {
  const int64_t n = check_flat(dim(logits, 0), targets, loss_out);
  crossent::BinaryOptions opt;
  opt.weight = check_elementwise(weight, n, "weight");
  opt.pos_weight = check_elementwise(pos_weight, n, "pos_weight");
  check_range(label_smoothing, 0.0, 1.0, "label_smoothing");
  opt.label_smoothing = label_smoothing;
  T* g = check_flat_grad(grad, n);
  const auto& k = dense_target_kernels<T, TT>();
  nb::gil_scoped_release release;
  int64_t n_bad = 0;
  const double total = k.sigmoid_bce(logits.data(), n, targets.data(), opt,
                                     loss_out ? loss_out->data() : nullptr, g, grad_scale, &n_bad);
  return {total, n_bad};
}

template <typename T, typename TT>
std::pair<double, int64_t> bce(Flat<const T> probs, Flat<const TT> targets, std::optional<ConstVector> weight,
           std::optional<Vector> loss_out, std::optional<Flat<T>> grad, double grad_scale) {
  const int64_t n = check_flat(dim(probs, 0), targets, loss_out);
  crossent::BinaryOptions opt;
  opt.weight = check_elementwise(weight, n, "weight");
  T* g = check_flat_grad(grad, n);
  const auto& k = dense_target_kernels<T, TT>();
  nb::gil_scoped_release release;
  int64_t n_bad = 0;
  const double total = k.bce(probs.data(), n, targets.data(), opt,
                             loss_out ? loss_out->data() : nullptr, g, grad_scale, &n_bad);
  return {total, n_bad};
}

template <typename T, typename TT>
std::pair<double, int64_t> sigmoid_focal(Flat<const T> logits, Flat<const TT> targets, std::optional<double> alpha,
                     double gamma, std::optional<Vector> loss_out, std::optional<Flat<T>> grad,
                     double grad_scale) {
  const int64_t n = check_flat(dim(logits, 0), targets, loss_out);
  crossent::BinaryOptions opt;
  if (alpha) check_range(*alpha, 0.0, 1.0, "alpha");
  check_range(gamma, 0.0, HUGE_VAL, "gamma");
  opt.has_alpha = alpha.has_value();
  opt.alpha = alpha.value_or(0.0);
  opt.gamma = gamma;
  T* g = check_flat_grad(grad, n);
  const auto& k = dense_target_kernels<T, TT>();
  nb::gil_scoped_release release;
  int64_t n_bad = 0;
  const double total = k.sigmoid_focal(logits.data(), n, targets.data(), opt,
                                       loss_out ? loss_out->data() : nullptr, g, grad_scale,
                                       &n_bad);
  return {total, n_bad};
}

// Per row of p (and q): the measure into value, the row sums into sum_p (sum_q); returns the
// count of entries outside [0, 1] (and of overflowing KL ratios).
template <typename T>
int64_t measure_rows(int kind, Matrix<const T> p, std::optional<Matrix<const T>> q, Vector value,
                     Vector sum_p, std::optional<Vector> sum_q) {
  const int64_t N = dim(p, 0), C = check_rows(dim(p, 1), "p");
  if (kind < 0 || kind > 3)
    throw std::invalid_argument("kind must be 0 (entropy), 1 (cross-entropy), 2 (KL) or 3 (JS), got " +
                                std::to_string(kind));
  if ((kind == 0) != !q) throw std::invalid_argument("q is needed by every measure but the entropy");
  if (q && (dim(*q, 0) != N || dim(*q, 1) != C))
    throw std::invalid_argument("q must have the shape of p");
  if ((kind == 0) != !sum_q) throw std::invalid_argument("sum_q goes with q");
  check_loss_out(value, N);
  check_loss_out(sum_p, N);
  if (sum_q) check_loss_out(*sum_q, N);
  const auto& k = crossent::kernels_for<T>();
  nb::gil_scoped_release release;
  return k.measure_rows(kind, p.data(), q ? q->data() : nullptr, N, C, value.data(),
                        sum_p.data(), sum_q ? sum_q->data() : nullptr);
}

// The math layer element-wise, for its tests: out = f(x), or f(x, param) for the powers.
template <typename T>
void math(const std::string& function, Flat<const T> x, Flat<T> out, double param) {
  int f = -1;
  for (int i = 0; i < crossent::kMathCount; ++i)
    if (function == crossent::kMathNames[i]) f = i;
  if (f < 0) throw std::invalid_argument("unknown math function '" + function + "'");
  if (dim(out, 0) != dim(x, 0))
    throw std::invalid_argument("out has " + std::to_string(dim(out, 0)) + " elements, x has " +
                                std::to_string(dim(x, 0)));
  const auto& k = crossent::kernels_for<T>();
  nb::gil_scoped_release release;
  k.math(f, x.data(), static_cast<T>(param), out.data(), dim(x, 0));
}

// The Python side (crossent._backend.MAX_THREADS) holds the same bound: libgomp aborts or
// crashes when it cannot create a team of the size asked for.
constexpr int64_t kMaxThreads = 1024;

template <typename T, typename L>
int64_t score_columns(std::vector<Flat<const T>> columns, Flat<const L> codes,
                      std::optional<Flat<const int64_t>> code_class,
                      std::optional<ConstVector> weights, double tol, bool normalize,
                      double log_clip, int64_t slice_rows, Vector loss_out, Matrix<double> states,
                      Flat<int64_t> invalid) {
  const int64_t C = static_cast<int64_t>(columns.size());
  if (C < 2) throw std::invalid_argument("columns must hold at least two classes");
  const int64_t m = dim(codes, 0);
  std::vector<const T*> cols(static_cast<size_t>(C));
  for (int64_t k = 0; k < C; ++k) {
    if (dim(columns[k], 0) != m)
      throw std::invalid_argument("columns[" + std::to_string(k) + "] has " +
                                  std::to_string(dim(columns[k], 0)) + " rows, codes " +
                                  std::to_string(m));
    cols[static_cast<size_t>(k)] = columns[k].data();
  }
  // every code names a class: one in [0, C), or an entry of code_class, itself in [0, C)
  const int64_t n_codes = code_class ? dim(*code_class, 0) : C;
  if (code_class)
    for (int64_t j = 0; j < n_codes; ++j)
      if (code_class->data()[j] < 0 || code_class->data()[j] >= C)
        throw std::out_of_range("code_class[" + std::to_string(j) + "] = " +
                                std::to_string(code_class->data()[j]) + " is outside [0, " +
                                std::to_string(C) + ")");
  const L* y = codes.data();
  for (int64_t i = 0; i < m; ++i)
    if (y[i] < 0 || y[i] >= n_codes)
      throw std::out_of_range("codes[" + std::to_string(i) + "] = " + std::to_string(y[i]) +
                              " is outside [0, " + std::to_string(n_codes) + ")");
  check_loss_out(loss_out, m);
  const double* w = nullptr;
  if (weights) {
    if (dim(*weights, 0) != m)
      throw std::invalid_argument("weights has " + std::to_string(dim(*weights, 0)) +
                                  " entries, expected " + std::to_string(m));
    w = weights->data();
    for (int64_t i = 0; i < m; ++i)
      if (!(w[i] >= 0 && std::isfinite(w[i])))
        throw std::invalid_argument("weights[" + std::to_string(i) + "] = " +
                                    std::to_string(w[i]) + " is not finite and >= 0");
  }
  if (!(tol >= 0)) throw std::invalid_argument("tol must be >= 0");
  if (std::isnan(log_clip) || log_clip > 0)
    throw std::invalid_argument("log_clip must be <= 0 (or -inf)");
  if (slice_rows < 1) throw std::invalid_argument("slice_rows must be >= 1");
  const int64_t n_slices = (m + slice_rows - 1) / slice_rows;
  const int64_t bins4 = dim(states, 1) - crossent::kScoreTotals - 3 * C;
  if (dim(states, 0) != n_slices || bins4 < 4 || bins4 % 4 != 0)
    throw std::invalid_argument("states has shape (" + std::to_string(dim(states, 0)) + ", " +
                                std::to_string(dim(states, 1)) + "); expected (" +
                                std::to_string(n_slices) +
                                ", 6 + 3 * classes + 4 * bins): one row per slice");
  if (dim(invalid, 0) != n_slices)
    throw std::invalid_argument("invalid has " + std::to_string(dim(invalid, 0)) +
                                " entries, expected one per slice: " + std::to_string(n_slices));
  nb::gil_scoped_release release;
  const auto& k = crossent::kernels_for<T>();
  const int64_t* classes = code_class ? code_class->data() : nullptr;
  if constexpr (std::is_same_v<L, int32_t>)
    return k.score_slices_i32(cols.data(), C, m, y, classes, w, tol, normalize, log_clip,
                              bins4 / 4, slice_rows, loss_out.data(), states.data(),
                              invalid.data());
  else
    return k.score_slices_i64(cols.data(), C, m, y, classes, w, tol, normalize, log_clip,
                              bins4 / 4, slice_rows, loss_out.data(), states.data(),
                              invalid.data());
}

void set_num_threads(int64_t n) {
  if (n < 1 || n > kMaxThreads)
    throw std::invalid_argument("n must be in [1, " + std::to_string(kMaxThreads) + "], got " +
                                std::to_string(n));
#ifdef _OPENMP
  omp_set_num_threads(static_cast<int>(n));
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
  const auto& k = crossent::kernels_for<T>();
  nb::gil_scoped_release release;
  k.normalize_rows(x.data(), N, C, lse_out ? lse_out->data() : nullptr, o, log_space);
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

template <typename T, typename TT>
void define_dense_targets(nb::module_& m) {
  m.def("softmax_ce_dense", &softmax_ce_dense<T, TT>, "logits"_a.noconvert(),
        "targets"_a.noconvert(), "weight"_a.noconvert().none(), "label_smoothing"_a,
        "z_loss"_a, "softcap"_a, "loss_out"_a.noconvert(), "grad"_a.noconvert().none(),
        "grad_scale"_a,
        "Per-row softmax cross-entropy of target distributions (float32 or float64); returns "
        "the count of targets outside [0, 1].");
  m.def("sigmoid_bce", &sigmoid_bce<T, TT>, "logits"_a.noconvert(), "targets"_a.noconvert(),
        "weight"_a.noconvert().none(), "pos_weight"_a.noconvert().none(), "label_smoothing"_a,
        "loss_out"_a.noconvert().none(), "grad"_a.noconvert().none(), "grad_scale"_a,
        "Element-wise binary cross-entropy of logits (flat arrays); returns (sum of the losses, "
        "count of targets outside [0, 1]).");
  m.def("bce", &bce<T, TT>, "probs"_a.noconvert(), "targets"_a.noconvert(),
        "weight"_a.noconvert().none(), "loss_out"_a.noconvert().none(),
        "grad"_a.noconvert().none(), "grad_scale"_a,
        "Element-wise binary cross-entropy of probabilities (flat arrays); returns (sum, count "
        "of targets and probabilities outside [0, 1]).");
  m.def("sigmoid_focal", &sigmoid_focal<T, TT>, "logits"_a.noconvert(), "targets"_a.noconvert(),
        "alpha"_a.none(), "gamma"_a, "loss_out"_a.noconvert().none(),
        "grad"_a.noconvert().none(), "grad_scale"_a,
        "Element-wise sigmoid focal loss (flat arrays); returns (sum, count of targets outside "
        "[0, 1]).");
}

template <typename T, typename L>
void for_codes(nb::module_& m) {
  m.def("score_columns", &score_columns<T, L>, "columns"_a.noconvert(), "codes"_a.noconvert(),
        "code_class"_a.noconvert().none(), "weights"_a.noconvert().none(), "tol"_a,
        "normalize"_a, "log_clip"_a, "slice_rows"_a, "loss_out"_a.noconvert(),
        "states"_a.noconvert(), "invalid"_a.noconvert(),
        "Validate and score rows of C probability columns (one dtype), their classes given by "
        "codes (through code_class when given), in slices of slice_rows on the calling "
        "thread: per-row losses into loss_out, each slice's metric sums into its row of "
        "states and its first invalid row (or -1) into invalid; returns the first invalid row "
        "of all, or -1.");
}

template <typename T>
void define_all(nb::module_& m) {
  m.def("softmax_ce_index", &softmax_ce_index<T>, "logits"_a.noconvert(),
        "labels"_a.noconvert(), "weight"_a.noconvert().none(), "ignore_index"_a.none(),
        "label_smoothing"_a, "z_loss"_a, "softcap"_a, "loss_out"_a.noconvert(),
        "grad"_a.noconvert().none(), "grad_scale"_a,
        "Per-row softmax cross-entropy of class indices into loss_out and, when grad is given, "
        "grad_scale * d loss / d logits into grad (which may be logits itself).");
  define_dense_targets<T, float>(m);
  define_dense_targets<T, double>(m);
  m.def("nll", &nll<T>, "log_probs"_a.noconvert(), "labels"_a.noconvert(),
        "weight"_a.noconvert().none(), "ignore_index"_a.none(), "loss_out"_a.noconvert(),
        "grad"_a.noconvert().none(), "grad_scale"_a, "Per-row negative log-likelihood.");
  m.def("softmax_focal", &softmax_focal<T>, "logits"_a.noconvert(), "labels"_a.noconvert(),
        "alpha"_a.noconvert().none(), "gamma"_a, "ignore_index"_a.none(),
        "loss_out"_a.noconvert(), "grad"_a.noconvert().none(), "grad_scale"_a,
        "Per-row softmax focal loss.");
  m.def("normalize_rows", &normalize_rows<T>, "x"_a.noconvert(), "lse_out"_a.noconvert().none(),
        "out"_a.noconvert().none(), "log_space"_a,
        "Per row of x: logsumexp into lse_out, and softmax (or log_softmax when log_space) "
        "into out (which may be x itself).");
  m.def("measure_rows", &measure_rows<T>, "kind"_a, "p"_a.noconvert(), "q"_a.noconvert().none(),
        "value"_a.noconvert(), "sum_p"_a.noconvert(), "sum_q"_a.noconvert().none(),
        "Per row: entropy (0), cross-entropy (1), KL (2) or JS (3) divergence into value, the "
        "row sums into sum_p / sum_q; returns the count of entries outside [0, 1].");
  m.def("_math", &math<T>, "function"_a, "x"_a.noconvert(), "out"_a.noconvert(),
        "param"_a = 0.0,
        "The math layer's function (exp, exp_nonpos, log, log_pos, log1p, log_sigmoid, softplus, tanh; "
        "pow_unit and pow1m with the exponent param) element-wise at the active SIMD level, "
        "for its tests.");
  for_codes<T, int32_t>(m);
  for_codes<T, int64_t>(m);
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
  m.def("simd_level", [] { return std::string(crossent::active().level); },
        "The SIMD level the kernels run at: 'avx512', 'avx2' or 'baseline'.");
  m.def("set_simd_level", &crossent::set_simd_level, "level"_a,
        "Run the kernels at this SIMD level (one this CPU supports).");
  m.def("supported_simd_levels", &crossent::supported_levels,
        "The SIMD levels this CPU can run, widest first, comma-separated.");
  crossent::active();  // a bad CROSSENT_SIMD fails the import, with its message
}
