// One batched call of forward_cached: inputs padded on the right, caches joined and padded, the
// scored positions normalised, and each row's result (scores, extended cache, next-token
// log-probs) cut back out.
#include "compressor/torch_forward.h"

#include <ATen/Parallel.h>
#include <c10/core/InferenceMode.h>

#include <algorithm>
#include <thread>
#include <utility>

#include "compressor/exception_status.h"

namespace terse::compressor {
namespace {

struct StepResult {
  std::vector<float> nll;
  std::vector<torch::Tensor> past;
  std::vector<float> last_row;
};

}  // namespace

TorchForward::TorchForward(torch::jit::Module module, const ModelShape& shape, torch::Device device,
                           int threads)
    : module_(std::move(module)), shape_(shape), device_(device), threads_(threads) {}

void TorchForward::Serve(const std::function<void()>& serve) {
  // OpenMP thread counts are per calling thread: set them on the thread that runs the model.
  at::set_num_threads(threads_);
  c10::InferenceMode inference_mode;
  serve();
}

absl::Status TorchForward::Execute(std::span<BatchStep* const> batch) {
  std::vector<TorchStep*> steps;
  steps.reserve(batch.size());
  for (BatchStep* step : batch) steps.push_back(static_cast<TorchStep*>(step));
  try {
    ExecuteOrThrow(steps);
  } catch (const std::exception& e) {
    return StatusFromException(e, "language model forward pass failed");
  }
  return absl::OkStatus();
}

void TorchForward::ExecuteOrThrow(std::span<TorchStep* const> batch) {
  const int64_t b = static_cast<int64_t>(batch.size());
  int64_t t_max = 0;
  int64_t p_max = 0;
  for (const TorchStep* step : batch) {
    t_max = std::max<int64_t>(t_max, step->ids.size());
    p_max = std::max(p_max, step->past_tokens());
  }
  const auto cpu_long = torch::TensorOptions().dtype(torch::kInt64);
  torch::Tensor ids = torch::full({b, t_max}, shape_.pad_id, cpu_long);
  torch::Tensor targets = torch::zeros({b, t_max}, cpu_long);
  bool padded = false;
  {
    auto ids_a = ids.accessor<int64_t, 2>();
    auto targets_a = targets.accessor<int64_t, 2>();
    for (int64_t i = 0; i < b; ++i) {
      const TorchStep& step = *batch[i];
      for (size_t j = 0; j < step.ids.size(); ++j) {
        ids_a[i][j] = step.ids[j];
        targets_a[i][j] = std::max<int64_t>(step.targets[j], 0);
      }
      padded |= static_cast<int64_t>(step.ids.size()) != t_max || step.past_tokens() != p_max;
    }
  }

  // Keys: [0, P_i) the row's cache, [P_i, p_max) padding, then its T_i new tokens, then
  // padding. Positions follow the mask, so a padded row sees the positions it would alone.
  torch::jit::IValue mask;  // None
  if (padded) {
    torch::Tensor m = torch::zeros({b, p_max + t_max}, cpu_long);
    for (int64_t i = 0; i < b; ++i) {
      const TorchStep& step = *batch[i];
      m[i].narrow(0, 0, step.past_tokens()).fill_(1);
      m[i].narrow(0, p_max, static_cast<int64_t>(step.ids.size())).fill_(1);
    }
    mask = m.to(device_);
  }
  c10::List<at::Tensor> past;
  if (p_max > 0) {
    if (b == 1) {
      for (const torch::Tensor& t : batch[0]->past) past.push_back(t);
    } else {
      const size_t n_past = batch[0]->past.size();
      for (size_t l = 0; l < n_past; ++l) {
        const torch::Tensor& like = batch[0]->past[l];
        torch::Tensor joined = torch::zeros({b, like.size(1), p_max, like.size(3)}, like.options());
        for (int64_t i = 0; i < b; ++i) {
          const torch::Tensor& own = batch[i]->past[l];
          joined[i].narrow(1, 0, own.size(2)).copy_(own[0]);
        }
        past.push_back(joined);
      }
    }
  }

  torch::jit::IValue output = module_.run_method("forward_cached", ids.to(device_), past, mask);
  const auto& tuple = output.toTupleRef().elements();
  torch::Tensor logits = tuple.at(0).toTensor();
  c10::List<at::Tensor> new_past = tuple.at(1).toTensorList();
  TORCH_CHECK(logits.dim() == 3 && logits.size(0) == b && logits.size(1) == t_max &&
                  logits.size(2) == shape_.vocab_size,
              "forward_cached returned logits of shape ", logits.sizes(), ", expected [", b, ", ",
              t_max, ", ", shape_.vocab_size, "]");
  TORCH_CHECK(new_past.size() == static_cast<size_t>(shape_.past_tensors),
              "forward_cached returned ", new_past.size(), " cache tensors, expected ",
              shape_.past_tensors);

  // Normalise only the positions some row reads (later windows score just their tail).
  int64_t first_read = t_max;
  for (const TorchStep* step : batch) {
    const int64_t t = static_cast<int64_t>(step->ids.size());
    if (step->keep_last_row) first_read = std::min(first_read, t - 1);
    for (int64_t j = 0; j < std::min(t, first_read); ++j) {
      if (step->targets[j] >= 0) {
        first_read = j;
        break;
      }
    }
  }
  first_read = std::min(first_read, t_max - 1);
  const int64_t read = t_max - first_read;
  // -log p(target) = logsumexp(row) - row[target]: no normalised [B, T, V] tensor is written.
  const torch::Tensor rows = logits.narrow(1, first_read, read).to(torch::kFloat32);
  const torch::Tensor picked =
      rows.gather(2, targets.narrow(1, first_read, read).to(device_).unsqueeze(2)).squeeze(2);
  torch::Tensor nll = (torch::logsumexp(rows, -1) - picked).to(torch::kCPU);
  auto nll_a = nll.accessor<float, 2>();

  std::vector<StepResult> results(b);
  for (int64_t i = 0; i < b; ++i) {
    const TorchStep& step = *batch[i];
    StepResult& result = results[i];
    const int64_t t = static_cast<int64_t>(step.ids.size());
    for (int64_t j = first_read; j < t; ++j) {
      if (step.targets[j] >= 0) result.nll.push_back(nll_a[i][j - first_read]);
    }
    if (step.keep_last_row) {
      torch::Tensor row =
          torch::log_softmax(rows[i][t - 1 - first_read], -1).to(torch::kCPU).contiguous();
      result.last_row.assign(row.data_ptr<float>(), row.data_ptr<float>() + row.numel());
    }
    if (step.keep_past) {
      const int64_t p = step.past_tokens();
      result.past.reserve(new_past.size());
      for (size_t l = 0; l < new_past.size(); ++l) {
        torch::Tensor full = new_past.get(l);
        if (!padded) {
          result.past.push_back(b == 1 ? full : full.narrow(0, i, 1).clone());
        } else if (p == p_max) {
          // clone(): a view would keep the whole batch's cache alive.
          result.past.push_back(full.narrow(0, i, 1).narrow(2, 0, p_max + t).clone());
        } else {
          torch::Tensor row = full.narrow(0, i, 1);
          result.past.push_back(torch::cat({row.narrow(2, 0, p), row.narrow(2, p_max, t)}, 2));
        }
      }
    }
  }
  // Every row succeeded: hand the results over.
  for (int64_t i = 0; i < b; ++i) {
    batch[i]->nll = std::move(results[i].nll);
    batch[i]->new_past = std::move(results[i].past);
    batch[i]->last_row = std::move(results[i].last_row);
  }
}

TorchBackend::TorchBackend(torch::jit::Module module, const ModelShape& shape, torch::Device device,
                           const LanguageModelOptions& options)
    : forward_(std::move(module), shape, device,
               options.threads > 0
                   ? options.threads
                   : std::max(1, static_cast<int>(std::thread::hardware_concurrency()))),
      scheduler_(forward_,
                 BatchSchedulerOptions{
                     .max_batch_size = options.max_batch_size,
                     .max_batch_wait = std::chrono::microseconds(options.max_batch_wait_us),
                     .batch_token_budget = shape.max_context,
                     .linear_cost = 6 * shape.d_model + shape.vocab_size / (2 * shape.n_layer),
                 }) {}

}  // namespace terse::compressor
