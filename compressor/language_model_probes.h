// Probes into the TorchScript LanguageModel for tests and benchmarks: the worker's counters, a
// task run on the worker, the module's shape and the FLOP/s ceiling of plain matrix products.
// Not part of the runtime library: only tests/ and bench/ link terse_compressor_probes.
#pragma once

#include <functional>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "compressor/batch_scheduler.h"
#include "compressor/language_model.h"
#include "compressor/torch_language_model.h"

namespace terse::compressor {

// Counters of `model`'s worker; zeros if `model` is not the TorchScript backend.
InferenceStats StatsOf(const LanguageModel& model);

// Runs `task` alone on `model`'s worker thread and returns when it has run; the queue waits
// meanwhile (tests use it to let steps pile up, then release them as one batch). An exception
// from `task` is returned as a status.
absl::Status RunOnWorker(const LanguageModel& model, std::function<void()> task);

// The architecture of `model`; an error if it is not the TorchScript backend.
absl::StatusOr<ModelShape> ShapeOf(const LanguageModel& model);

// FLOP/s of plain matrix products shaped like the linear layers and LM head of one forward pass
// over `rows` tokens, run on `model`'s worker (same device, threads and settings as scoring):
// the ceiling the scorer's own FLOP/s is compared with. `bf16` runs them in bfloat16.
absl::StatusOr<double> MeasureMatmulFlops(const LanguageModel& model, int rows, int repeats,
                                          bool bf16);

}  // namespace terse::compressor
