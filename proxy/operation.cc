// The labels of faces and operations.
#include "proxy/operation.h"

namespace terse::proxy {

std::string_view OperationName(Operation operation) {
  switch (operation) {
    case Operation::kChatCompletions:
      return "chat_completions";
    case Operation::kCompletions:
      return "completions";
    case Operation::kEmbeddings:
      return "embeddings";
    case Operation::kCompress:
      return "compress";
    case Operation::kListModels:
    case Operation::kHealth:
    case Operation::kReady:
    case Operation::kMetrics:
    case Operation::kUsage:
      return "other";
  }
  return "other";
}

std::string_view FaceName(Face face) { return face == Face::kHttp ? "http" : "grpc"; }

}  // namespace terse::proxy
