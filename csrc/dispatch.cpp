// The run-time choice of SIMD level (kernel_table.hpp). Compiled once, for the baseline.
#include <atomic>
#include <cstdlib>
#include <stdexcept>
#include <string>

#include "kernel_table.hpp"

namespace crossent {
namespace {

bool cpu_has(const std::string& level) {
  if (level == "baseline") return true;
#if defined(__x86_64__) && defined(__GNUC__)
  __builtin_cpu_init();
  if (level == "avx2") return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  if (level == "avx512")
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq") &&
           __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512bw") &&
           __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#endif
  return false;
}

const KernelTable* table_of(const std::string& level) {
  if (level == "avx512") return &avx512::table();
  if (level == "avx2") return &avx2::table();
  if (level == "baseline") return &baseline::table();
  throw std::invalid_argument("unknown SIMD level '" + level +
                              "': expected 'avx512', 'avx2' or 'baseline'");
}

const KernelTable* choose() {
  const char* env = std::getenv("CROSSENT_SIMD");
  if (env && *env) {
    try {
      set_simd_level(env);
    } catch (const std::invalid_argument& e) {
      throw std::invalid_argument(std::string("CROSSENT_SIMD=") + env + ": " + e.what());
    }
    return nullptr;  // set_simd_level stored it
  }
  for (const char* level : {"avx512", "avx2", "baseline"})
    if (cpu_has(level)) return table_of(level);
  return &baseline::table();
}

std::atomic<const KernelTable*> current{nullptr};

}  // namespace

std::string supported_levels() {
  std::string out;
  for (const char* level : {"avx512", "avx2", "baseline"})
    if (cpu_has(level)) out += (out.empty() ? "" : ",") + std::string(level);
  return out;
}

void set_simd_level(const std::string& name) {
  const KernelTable* t = table_of(name);
  if (!cpu_has(name))
    throw std::invalid_argument("SIMD level '" + name + "' is not supported by this CPU (it runs " +
                                supported_levels() + ")");
  current.store(t);
}

const KernelTable& active() {
  const KernelTable* t = current.load();
  if (t) return *t;
  t = choose();
  if (t) current.store(t);
  return *current.load();
}

}  // namespace crossent
