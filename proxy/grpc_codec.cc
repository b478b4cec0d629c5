// terse.v1 protos <-> OpenAI JSON. Structs are walked directly rather than printed to a JSON string
// and parsed again: one pass, sorted keys, and integral numbers stay integers.
#include "proxy/grpc_codec.h"

#include <algorithm>
#include <cmath>
#include <initializer_list>
#include <limits>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "base/errors.h"
#include "base/status_macros.h"

namespace terse::proxy {
namespace {

using google::protobuf::ListValue;
using google::protobuf::Struct;
using google::protobuf::Value;

std::string Str(std::string_view s) { return std::string(s); }

// Doubles that hold an integer exactly print as JSON integers (`"seed": 42`, not 42.0).
Json NumberToJson(double d) {
  constexpr double kExact = 9007199254740992.0;  // 2^53
  if (std::isfinite(d) && std::trunc(d) == d && std::fabs(d) <= kExact) {
    return Json(static_cast<int64_t>(d));
  }
  return Json(d);
}

Json ValueToJson(const Value& value) {
  switch (value.kind_case()) {
    case Value::kNumberValue:
      return NumberToJson(value.number_value());
    case Value::kStringValue:
      return Json(value.string_value());
    case Value::kBoolValue:
      return Json(value.bool_value());
    case Value::kStructValue:
      return StructToJson(value.struct_value());
    case Value::kListValue: {
      Json array = Json::array();
      for (const Value& v : value.list_value().values()) array.push_back(ValueToJson(v));
      return array;
    }
    case Value::kNullValue:
    case Value::KIND_NOT_SET:
      break;
  }
  return Json(nullptr);
}

void JsonToValue(const Json& json, Value& out) {
  switch (json.type()) {
    case Json::value_t::null:
    case Json::value_t::discarded:
      out.set_null_value(google::protobuf::NULL_VALUE);
      return;
    case Json::value_t::boolean:
      out.set_bool_value(json.get<bool>());
      return;
    case Json::value_t::number_integer:
    case Json::value_t::number_unsigned:
    case Json::value_t::number_float:
      out.set_number_value(json.get<double>());
      return;
    case Json::value_t::string:
      out.set_string_value(json.get_ref<const std::string&>());
      return;
    case Json::value_t::binary:  // never produced by the parser; carry as null
      out.set_null_value(google::protobuf::NULL_VALUE);
      return;
    case Json::value_t::array: {
      ListValue* list = out.mutable_list_value();
      for (const Json& item : json) JsonToValue(item, *list->add_values());
      return;
    }
    case Json::value_t::object: {
      Struct* s = out.mutable_struct_value();
      for (const auto& [key, item] : json.items()) JsonToValue(item, (*s->mutable_fields())[key]);
      return;
    }
  }
}

// Merges the fields of `extra` into `object`, refusing keys the modeled fields already set.
absl::Status MergeExtra(const Struct& extra, std::string_view where, Json& object) {
  Json fields = StructToJson(extra);
  auto& members = object.get_ref<Json::object_t&>();
  // Only the modeled fields, set before the merge, can repeat a key: the map's keys are unique.
  const size_t modeled = members.size();
  for (auto& [key, value] : fields.get_ref<Json::object_t&>()) {
    for (auto it = members.begin(); it != members.begin() + modeled; ++it) {
      if (it->first != key) continue;
      return InvalidRequest(
          absl::StrCat(Str(where), ".extra.", key, " repeats a field that is already set"),
          absl::StrCat(Str(where), ".extra.", key));
    }
    AppendNewMember(members, key, std::move(value));
  }
  return absl::OkStatus();
}

// The fields of `object` whose keys are not in `modeled` become `out.extra`; with none, `extra`
// stays unset (has_extra() false), as a client checking for it expects.
template <typename Proto>
absl::Status ExtraFromJson(const Json& object, std::initializer_list<std::string_view> modeled,
                           std::string_view where, Proto& out) {
  Json rest = Json::object();
  for (const auto& [key, value] : object.items()) {
    if (std::find(modeled.begin(), modeled.end(), key) == modeled.end()) {
      AppendNewMember(rest.get_ref<Json::object_t&>(), key, value);  // an object's keys are unique
    }
  }
  if (rest.empty()) return absl::OkStatus();
  ASSIGN_OR_RETURN(*out.mutable_extra(), JsonToStruct(rest, where));
  return absl::OkStatus();
}

// Reads an optional string field: absent and null are empty.
absl::StatusOr<std::string> StringField(const Json& object, const char* key,
                                        std::string_view where) {
  auto it = object.find(key);
  if (it == object.end() || it->is_null()) return std::string();
  if (!it->is_string()) {
    return InvalidRequest(absl::StrCat(Str(where), ".", key, " must be a string"),
                          absl::StrCat(Str(where), ".", key));
  }
  return it->get<std::string>();
}

// Reads an optional non-negative integer field: absent and null are 0.
absl::StatusOr<uint64_t> CountField(const Json& object, const char* key, std::string_view where) {
  auto it = object.find(key);
  if (it == object.end() || it->is_null()) return uint64_t{0};
  if (it->is_number_unsigned()) return it->get<uint64_t>();
  if (it->is_number_integer() && it->get<int64_t>() >= 0) return uint64_t(it->get<int64_t>());
  return InvalidRequest(absl::StrCat(Str(where), ".", key, " must be a non-negative integer"),
                        absl::StrCat(Str(where), ".", key));
}

uint32_t ToU32(uint64_t v) {
  return static_cast<uint32_t>(std::min<uint64_t>(v, std::numeric_limits<uint32_t>::max()));
}

absl::StatusOr<v1::ContentPart> PartFromJson(const Json& part, std::string_view where) {
  if (!part.is_object()) return InvalidRequest(absl::StrCat(Str(where), " must be an object"));
  v1::ContentPart out;
  ASSIGN_OR_RETURN(*out.mutable_type(), StringField(part, "type", where));
  ASSIGN_OR_RETURN(*out.mutable_text(), StringField(part, "text", where));
  RETURN_IF_ERROR(ExtraFromJson(part, {"type", "text"}, where, out));
  return out;
}

absl::StatusOr<Json> PartToJson(const v1::ContentPart& part, std::string_view where) {
  Json out = Json::object();
  if (!part.type().empty()) out["type"] = part.type();
  if (part.type() == "text" || !part.text().empty()) out["text"] = part.text();
  RETURN_IF_ERROR(MergeExtra(part.extra(), where, out));
  return out;
}

absl::StatusOr<Json> MessagesToJson(
    const google::protobuf::RepeatedPtrField<v1::Message>& messages) {
  Json out = Json::array();
  for (int i = 0; i < messages.size(); ++i) {
    ASSIGN_OR_RETURN(Json m, MessageToJson(messages[i], absl::StrCat("messages[", i, "]")));
    out.push_back(std::move(m));
  }
  return out;
}

// The body's `terse` object (keys as the compression step reads them): only what the client set.
Json OverrideToJson(const v1::CompressionOverride& o) {
  Json out = Json::object();
  if (o.has_enabled()) out["compress"] = o.enabled();
  if (o.has_rate()) out["rate"] = o.rate();
  if (o.has_target_tokens()) out["target_tokens"] = o.target_tokens();
  return out;
}

absl::Status AddOverride(const v1::CompressionOverride& o, Json& body) {
  Json terse = OverrideToJson(o);
  if (terse.empty()) return absl::OkStatus();
  if (body.contains("terse")) {
    return InvalidRequest("extra.terse and compression both set a compression override",
                          "extra.terse");
  }
  body["terse"] = std::move(terse);
  return absl::OkStatus();
}

absl::StatusOr<v1::Usage> UsageFromJson(const Json& usage) {
  v1::Usage out;
  if (!usage.is_object()) return InvalidRequest("usage must be an object", "usage");
  ASSIGN_OR_RETURN(uint64_t prompt, CountField(usage, "prompt_tokens", "usage"));
  ASSIGN_OR_RETURN(uint64_t completion, CountField(usage, "completion_tokens", "usage"));
  ASSIGN_OR_RETURN(uint64_t total, CountField(usage, "total_tokens", "usage"));
  out.set_prompt_tokens(ToU32(prompt));
  out.set_completion_tokens(ToU32(completion));
  out.set_total_tokens(ToU32(total));
  RETURN_IF_ERROR(
      ExtraFromJson(usage, {"prompt_tokens", "completion_tokens", "total_tokens"}, "usage", out));
  return out;
}

absl::StatusOr<int64_t> CreatedField(const Json& body) {
  auto it = body.find("created");
  if (it == body.end() || it->is_null()) return int64_t{0};
  if (it->is_number_integer() || it->is_number_unsigned()) return it->get<int64_t>();
  if (it->is_number_float()) return static_cast<int64_t>(it->get<double>());
  return InvalidRequest("created must be a number", "created");
}

// The fields shared by ChatResponse and ChatChunk; `choice_key` is "message" or "delta".
template <typename Out, typename ChoiceOut>
absl::Status CompletionFromJson(const Json& body, const char* choice_key, Out& out,
                                ChoiceOut* (Out::*add_choice)()) {
  if (!body.is_object()) return InvalidRequest("the completion must be a JSON object");
  ASSIGN_OR_RETURN(*out.mutable_id(), StringField(body, "id", "completion"));
  ASSIGN_OR_RETURN(*out.mutable_model(), StringField(body, "model", "completion"));
  ASSIGN_OR_RETURN(int64_t created, CreatedField(body));
  out.set_created(created);
  if (auto it = body.find("usage"); it != body.end() && !it->is_null()) {
    ASSIGN_OR_RETURN(*out.mutable_usage(), UsageFromJson(*it));
  }
  if (auto it = body.find("choices"); it != body.end() && !it->is_null()) {
    if (!it->is_array()) return InvalidRequest("choices must be an array", "choices");
    for (size_t i = 0; i < it->size(); ++i) {
      const Json& choice = (*it)[i];
      std::string where = absl::StrCat("choices[", i, "]");
      if (!choice.is_object()) return InvalidRequest(where + " must be an object", where);
      ChoiceOut* c = (out.*add_choice)();
      ASSIGN_OR_RETURN(uint64_t index, CountField(choice, "index", where));
      c->set_index(ToU32(index));
      ASSIGN_OR_RETURN(*c->mutable_finish_reason(), StringField(choice, "finish_reason", where));
      if (auto m = choice.find(choice_key); m != choice.end() && !m->is_null()) {
        std::string m_where = absl::StrCat(where, ".", choice_key);
        v1::Message* target;
        if constexpr (std::is_same_v<ChoiceOut, v1::Choice>) {
          target = c->mutable_message();
        } else {
          target = c->mutable_delta();
        }
        ASSIGN_OR_RETURN(*target, MessageFromJson(*m, m_where));
      }
      // logprobs and whatever else OpenAI adds to a choice reach the client as they came.
      RETURN_IF_ERROR(ExtraFromJson(choice, {"index", "finish_reason", choice_key}, where, *c));
    }
  }
  return ExtraFromJson(body, {"id", "object", "model", "created", "choices", "usage"}, "completion",
                       out);
}

// A decoding failure of an answer is not the client's fault: re-code it, keeping the message.
absl::Status AnswerError(const absl::Status& status, absl::StatusCode code, std::string_view what) {
  std::string message = absl::StrCat(Str(what), " has an unexpected shape: ", status.message());
  if (code == absl::StatusCode::kUnavailable) return UpstreamFailed(message);
  return absl::Status(code, message);
}

}  // namespace

absl::StatusOr<Struct> JsonToStruct(const Json& json, std::string_view where) {
  if (!json.is_object()) {
    return InvalidRequest(absl::StrCat(Str(where), " must be a JSON object"), Str(where));
  }
  Value value;
  JsonToValue(json, value);
  return std::move(*value.mutable_struct_value());
}

Json StructToJson(const Struct& value) {
  // Struct's map has no order; sort its fields by key so the same Struct always gives the same
  // JSON.
  std::vector<const google::protobuf::MapPair<std::string, Value>*> fields;
  fields.reserve(value.fields().size());
  for (const auto& field : value.fields()) fields.push_back(&field);
  std::sort(fields.begin(), fields.end(), [](auto* a, auto* b) { return a->first < b->first; });
  Json out = Json::object();
  auto& members = out.get_ref<Json::object_t&>();
  for (const auto* field : fields) {
    AppendNewMember(members, field->first, ValueToJson(field->second));
  }
  return out;
}

absl::StatusOr<Json> MessageToJson(const v1::Message& message, std::string_view where) {
  if (!message.content().empty() && message.parts_size() > 0) {
    return InvalidRequest(absl::StrCat(Str(where), " sets both content and parts"),
                          absl::StrCat(Str(where), ".content"));
  }
  // An unset role or model is left out, so the pipeline reports it as it does for HTTP clients.
  Json out = Json::object();
  if (!message.role().empty()) out["role"] = message.role();
  const auto& extra = message.extra().fields();
  if (message.parts_size() > 0) {
    Json parts = Json::array();
    for (int i = 0; i < message.parts_size(); ++i) {
      ASSIGN_OR_RETURN(Json part,
                       PartToJson(message.parts(i), absl::StrCat(Str(where), ".parts[", i, "]")));
      parts.push_back(std::move(part));
    }
    out["content"] = std::move(parts);
  } else if (!message.content().empty()) {
    out["content"] = message.content();
  } else if (!extra.count("content")) {
    // An assistant turn that only calls tools has null content in OpenAI's shape.
    bool calls_tools = extra.count("tool_calls") > 0 || extra.count("function_call") > 0;
    out["content"] = message.role() == "assistant" && calls_tools ? Json(nullptr) : Json("");
  }
  if (!message.name().empty()) out["name"] = message.name();
  if (!message.tool_call_id().empty()) out["tool_call_id"] = message.tool_call_id();
  RETURN_IF_ERROR(MergeExtra(message.extra(), where, out));
  return out;
}

absl::StatusOr<v1::Message> MessageFromJson(const Json& message, std::string_view where) {
  if (!message.is_object()) {
    return InvalidRequest(absl::StrCat(Str(where), " must be an object"), Str(where));
  }
  v1::Message out;
  ASSIGN_OR_RETURN(*out.mutable_role(), StringField(message, "role", where));
  ASSIGN_OR_RETURN(*out.mutable_name(), StringField(message, "name", where));
  ASSIGN_OR_RETURN(*out.mutable_tool_call_id(), StringField(message, "tool_call_id", where));
  if (auto it = message.find("content"); it != message.end() && !it->is_null()) {
    if (it->is_string()) {
      out.set_content(it->get<std::string>());
    } else if (it->is_array()) {
      for (size_t i = 0; i < it->size(); ++i) {
        ASSIGN_OR_RETURN(*out.add_parts(),
                         PartFromJson((*it)[i], absl::StrCat(Str(where), ".content[", i, "]")));
      }
    } else {
      return InvalidRequest(absl::StrCat(Str(where), ".content must be a string or an array"),
                            absl::StrCat(Str(where), ".content"));
    }
  }
  RETURN_IF_ERROR(ExtraFromJson(message, {"role", "content", "name", "tool_call_id"}, where, out));
  return out;
}

absl::StatusOr<Json> ChatRequestToJson(const v1::ChatRequest& request, bool stream) {
  Json body = Json::object();
  if (!request.model().empty()) body["model"] = request.model();
  ASSIGN_OR_RETURN(body["messages"], MessagesToJson(request.messages()));
  if (request.has_temperature()) body["temperature"] = request.temperature();
  if (request.has_max_tokens()) body["max_tokens"] = request.max_tokens();
  Struct extra = request.extra();
  // The RPC decides whether the answer streams; a `stream` in extra would contradict it.
  extra.mutable_fields()->erase("stream");
  RETURN_IF_ERROR(MergeExtra(extra, "request", body));
  body["stream"] = stream;
  if (stream) {
    Json& options = body["stream_options"];
    if (!options.is_object()) options = Json::object();
    options["include_usage"] = true;
  } else {
    body.erase("stream_options");
  }
  RETURN_IF_ERROR(AddOverride(request.compression(), body));
  return body;
}

absl::StatusOr<Json> CompressRequestToJson(const v1::CompressRequest& request) {
  Json body = Json::object();
  if (!request.model().empty()) body["model"] = request.model();
  ASSIGN_OR_RETURN(body["messages"], MessagesToJson(request.messages()));
  RETURN_IF_ERROR(AddOverride(request.compression(), body));
  return body;
}

absl::StatusOr<v1::ChatResponse> ChatResponseFromJson(const Json& body) {
  v1::ChatResponse out;
  absl::Status status = CompletionFromJson(body, "message", out, &v1::ChatResponse::add_choices);
  if (!status.ok()) return AnswerError(status, absl::StatusCode::kUnavailable, "the completion");
  return out;
}

absl::StatusOr<v1::ChatChunk> ChatChunkFromJson(const Json& chunk) {
  v1::ChatChunk out;
  absl::Status status = CompletionFromJson(chunk, "delta", out, &v1::ChatChunk::add_choices);
  if (!status.ok()) return AnswerError(status, absl::StatusCode::kUnavailable, "a stream chunk");
  return out;
}

absl::StatusOr<v1::ListModelsResponse> ListModelsFromJson(const Json& body) {
  v1::ListModelsResponse out;
  auto data = body.is_object() ? body.find("data") : body.end();
  if (!body.is_object() || data == body.end() || !data->is_array()) {
    return absl::InternalError("the model list has no `data` array");
  }
  for (size_t i = 0; i < data->size(); ++i) {
    const Json& model = (*data)[i];
    std::string where = absl::StrCat("data[", i, "]");
    if (!model.is_object()) return absl::InternalError(where + " is not an object");
    v1::Model* m = out.add_models();
    auto id = StringField(model, "id", where);
    auto owner = StringField(model, "owned_by", where);
    if (!id.ok()) return AnswerError(id.status(), absl::StatusCode::kInternal, "the model list");
    if (!owner.ok()) {
      return AnswerError(owner.status(), absl::StatusCode::kInternal, "the model list");
    }
    m->set_id(*std::move(id));
    m->set_owned_by(*std::move(owner));
  }
  return out;
}

absl::StatusOr<v1::CompressResponse> CompressResponseFromJson(const Json& body) {
  v1::CompressResponse out;
  auto messages = body.is_object() ? body.find("messages") : body.end();
  if (!body.is_object() || messages == body.end() || !messages->is_array()) {
    return absl::InternalError("the compress result has no `messages` array");
  }
  for (size_t i = 0; i < messages->size(); ++i) {
    auto m = MessageFromJson((*messages)[i], absl::StrCat("messages[", i, "]"));
    if (!m.ok()) return AnswerError(m.status(), absl::StatusCode::kInternal, "the compress result");
    *out.add_messages() = *std::move(m);
  }
  return out;
}

grpc::Status ToGrpcStatus(const absl::Status& status) {
  if (status.ok()) return grpc::Status::OK;
  return grpc::Status(static_cast<grpc::StatusCode>(status.code()), std::string(status.message()));
}

}  // namespace terse::proxy
