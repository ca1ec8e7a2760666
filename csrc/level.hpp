// Every kernel translation unit is compiled once per SIMD level (CMakeLists.txt: baseline
// SSE2, AVX2 + FMA, AVX-512), each copy in its own inline namespace named by CROSSENT_LEVEL, so
// the three copies of every function (and of every inline helper) have distinct symbols and the
// linker can never swap an AVX-512 copy into baseline code. kernel_table.hpp picks one at run
// time. Code in these files uses no standard-library template with out-of-line instances
// (std::vector and the like, whose one merged copy could come from an AVX-512 unit): scratch
// memory is a Buffer.
#pragma once
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <new>

#ifndef CROSSENT_LEVEL
#define CROSSENT_LEVEL single
#endif
#define CROSSENT_CAT2(a, b) a##b
#define CROSSENT_CAT(a, b) CROSSENT_CAT2(a, b)
#define CROSSENT_LEVEL_BEGIN \
  namespace crossent {       \
  inline namespace CROSSENT_CAT(level_, CROSSENT_LEVEL) {
#define CROSSENT_LEVEL_END \
  }                        \
  }

CROSSENT_LEVEL_BEGIN

// A scratch array of trivially copyable T (uninitialised), freed on scope exit.
template <typename T>
class Buffer {
 public:
  Buffer() = default;
  explicit Buffer(int64_t n) { resize(n); }
  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;
  ~Buffer() { std::free(data_); }
  void resize(int64_t n) {
    std::free(data_);
    data_ = static_cast<T*>(std::malloc(static_cast<size_t>(n > 0 ? n : 1) * sizeof(T)));
    if (!data_) throw std::bad_alloc();
    size_ = n;
  }
  bool empty() const { return size_ == 0; }
  T* data() { return data_; }
  const T* data() const { return data_; }
  T& operator[](int64_t i) { return data_[i]; }
  const T& operator[](int64_t i) const { return data_[i]; }

 private:
  T* data_ = nullptr;
  int64_t size_ = 0;
};

CROSSENT_LEVEL_END
