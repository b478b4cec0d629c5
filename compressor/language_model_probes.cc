// The probes of language_model_probes.h, through the backend's scheduler and forward pass.
#include "compressor/language_model_probes.h"

#include <torch/cuda.h>
#include <torch/script.h>

#include <chrono>
#include <utility>
#include <vector>

#include "compressor/exception_status.h"
#include "compressor/torch_forward.h"

namespace terse::compressor {
namespace {

// MeasureMatmulFlops's work, on the worker thread. Throws what LibTorch throws.
double MatmulFlopsPerSecond(const ModelShape& shape, const torch::Device& device, int rows,
                            int repeats, bool bf16) {
  const auto options =
      torch::TensorOptions().dtype(bf16 ? torch::kBFloat16 : torch::kFloat32).device(device);
  const int64_t d = shape.d_model;
  // The products of one forward pass: per layer qkv, attention out, MLP in and out; LM head.
  std::vector<std::pair<torch::Tensor, torch::Tensor>> products;
  double flops = 0;
  auto add = [&](int64_t k, int64_t n) {
    products.emplace_back(torch::randn({rows, k}, options), torch::randn({k, n}, options));
    flops += 2.0 * rows * k * n;
  };
  for (int l = 0; l < shape.n_layer; ++l) {
    add(d, 3 * d);
    add(d, d);
    add(d, 4 * d);
    add(4 * d, d);
  }
  add(d, shape.vocab_size);
  auto run_all = [&] {
    for (const auto& [a, w] : products) torch::mm(a, w);
    if (device.is_cuda()) torch::cuda::synchronize();
  };
  run_all();  // warm-up
  const auto start = std::chrono::steady_clock::now();
  for (int r = 0; r < repeats; ++r) run_all();
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return flops * repeats / seconds;
}

}  // namespace

InferenceStats StatsOf(const LanguageModel& model) {
  TorchBackend* backend = TorchBackendOf(model);
  return backend == nullptr ? InferenceStats{} : backend->scheduler().stats();
}

absl::Status RunOnWorker(const LanguageModel& model, std::function<void()> task) {
  TorchBackend* backend = TorchBackendOf(model);
  if (backend == nullptr) return absl::InvalidArgumentError("not a TorchScript language model");
  return backend->scheduler().RunTask([&task] {
    return CatchExceptions("language model task failed", [&task] {
      task();
      return absl::OkStatus();
    });
  });
}

absl::StatusOr<ModelShape> ShapeOf(const LanguageModel& model) {
  const TorchBackend* backend = TorchBackendOf(model);
  if (backend == nullptr) return absl::InvalidArgumentError("not a TorchScript language model");
  return backend->forward().shape();
}

absl::StatusOr<double> MeasureMatmulFlops(const LanguageModel& model, int rows, int repeats,
                                          bool bf16) {
  TorchBackend* backend = TorchBackendOf(model);
  if (backend == nullptr) return absl::InvalidArgumentError("not a TorchScript language model");
  const ModelShape shape = backend->forward().shape();
  const torch::Device device = backend->forward().device();
  double flops_per_second = 0;
  absl::Status status = backend->scheduler().RunTask([&] {
    return CatchExceptions("language model task failed", [&] {
      flops_per_second = MatmulFlopsPerSecond(shape, device, rows, repeats, bf16);
      return absl::OkStatus();
    });
  });
  if (!status.ok()) return status;
  return flops_per_second;
}

}  // namespace terse::compressor
