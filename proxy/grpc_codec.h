// Converts between the gRPC messages of terse.v1 and the OpenAI JSON the pipeline speaks. Pure
// functions, no state: the gRPC face is this codec plus call plumbing around the same Pipeline.
#pragma once

#include <grpcpp/support/status.h>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "base/json.h"
#include "google/protobuf/struct.pb.h"
#include "terse/v1/gateway.pb.h"

namespace terse::proxy {

// A JSON object as a Struct and back. Struct keeps no key order (keys come out sorted) and holds
// numbers as doubles: integral values up to 2^53 come back as JSON integers, larger ones lose
// precision. `json` must be an object (InvalidArgument otherwise); `where` names it in errors.
absl::StatusOr<google::protobuf::Struct> JsonToStruct(const Json& json, std::string_view where);
Json StructToJson(const google::protobuf::Struct& value);

// One chat message, proto -> OpenAI JSON: `content` is the string, or the array of `parts` when
// there are any; `extra` fields are merged into the object after the modeled ones. An `extra` key
// that repeats a field already set is an InvalidRequest (naming `where`.extra.<key>). Unset
// strings are left out (an empty role or model is then the pipeline's error, worded as for HTTP).
absl::StatusOr<Json> MessageToJson(const v1::Message& message, std::string_view where);
// One OpenAI message (request, response or delta) -> proto; fields without a proto field go to
// `extra`. Wrong shapes are InvalidRequest.
absl::StatusOr<v1::Message> MessageFromJson(const Json& message, std::string_view where);

// The OpenAI chat body of a ChatRequest. `stream` is decided by the RPC (Chat or ChatStream), not
// by the request; a stream always asks for `stream_options.include_usage` so its last chunk
// carries usage. The compression override becomes the body's `terse` object.
absl::StatusOr<Json> ChatRequestToJson(const v1::ChatRequest& request, bool stream);
// The body the pipeline compresses for Compress: model, messages and the `terse` override.
absl::StatusOr<Json> CompressRequestToJson(const v1::CompressRequest& request);

// The response decoders below fail with UpstreamFailed (chat) or Internal (models, compress) when
// the JSON has a shape the proto cannot carry: the client's request was not at fault.

// OpenAI `chat.completion` -> ChatResponse; fields without a proto field go to the `extra` of
// their level: the completion's (except `object`, which the message type already says), a
// choice's (e.g. `logprobs`) or the usage's (e.g. `prompt_tokens_details`). Leaves `compression`
// empty (the face sets it from the response head).
absl::StatusOr<v1::ChatResponse> ChatResponseFromJson(const Json& body);
// OpenAI `chat.completion.chunk` -> ChatChunk, the same way.
absl::StatusOr<v1::ChatChunk> ChatChunkFromJson(const Json& chunk);
// The body of GET /v1/models -> ListModelsResponse.
absl::StatusOr<v1::ListModelsResponse> ListModelsFromJson(const Json& body);
// The pipeline's compress result (`{"messages": [...]}`) -> CompressResponse, `report` left empty.
absl::StatusOr<v1::CompressResponse> CompressResponseFromJson(const Json& body);

// absl codes are gRPC codes: the code and message carry over unchanged; no payload is attached.
grpc::Status ToGrpcStatus(const absl::Status& status);

}  // namespace terse::proxy
