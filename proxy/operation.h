// What a client asks terse to do, the same for both faces: the HTTP routes and the gRPC methods
// map onto one Operation, so metrics, logs and the pipeline name it the same way.
#pragma once

#include <string_view>

namespace terse::proxy {

enum class Face { kHttp, kGrpc };

enum class Operation {
  // Calls that go through the Pipeline.
  kChatCompletions,
  kCompletions,
  kEmbeddings,
  kCompress,
  // Answered by the faces themselves.
  kListModels,
  kHealth,
  kReady,
  kMetrics,
  kUsage,  // a tenant's usage ledger
};

// The label of an operation in metrics and logs: "chat_completions", "completions",
// "embeddings" or "compress"; those a face answers itself share "other".
std::string_view OperationName(Operation operation);
// "http" or "grpc".
std::string_view FaceName(Face face);

}  // namespace terse::proxy
