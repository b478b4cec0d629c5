// OpenAI's request checks, member by member.
#include "proxy/openai_validation.h"

#include <algorithm>
#include <initializer_list>
#include <iterator>
#include <string>
#include <string_view>

#include "absl/strings/str_cat.h"
#include "base/errors.h"

namespace terse::proxy {
namespace {

// Debian's abseil has its own string_view; StrCat takes only that one.
absl::string_view Av(std::string_view s) { return absl::string_view(s.data(), s.size()); }

std::string_view TypeName(const Json& v) {
  switch (v.type()) {
    case Json::value_t::null:
      return "null";
    case Json::value_t::boolean:
      return "a boolean";
    case Json::value_t::string:
      return "a string";
    case Json::value_t::number_integer:
    case Json::value_t::number_unsigned:
      return "an integer";
    case Json::value_t::number_float:
      return "a decimal";
    case Json::value_t::array:
      return "an array";
    case Json::value_t::object:
      return "an object";
    default:
      return "an unsupported value";
  }
}

absl::Status WrongType(std::string_view param, std::string_view expected, const Json& got) {
  return InvalidRequest(absl::StrCat("Invalid type for '", Av(param), "': expected ", Av(expected),
                                     ", but got ", Av(TypeName(got)), " instead."),
                        param);
}

absl::Status Missing(std::string_view param) {
  return InvalidRequest(absl::StrCat("Missing required parameter: '", Av(param), "'."), param);
}

enum class Kind { kString, kBool, kNumber, kInteger, kObject, kArray, kStringOrArray };

bool HasKind(const Json& v, Kind kind) {
  switch (kind) {
    case Kind::kString:
      return v.is_string();
    case Kind::kBool:
      return v.is_boolean();
    case Kind::kNumber:
      return v.is_number();
    case Kind::kInteger:
      return v.is_number_integer();
    case Kind::kObject:
      return v.is_object();
    case Kind::kArray:
      return v.is_array();
    case Kind::kStringOrArray:
      return v.is_string() || v.is_array();
  }
  return false;
}

std::string_view KindName(Kind kind) {
  switch (kind) {
    case Kind::kString:
      return "a string";
    case Kind::kBool:
      return "a boolean";
    case Kind::kNumber:
      return "a number";
    case Kind::kInteger:
      return "an integer";
    case Kind::kObject:
      return "an object";
    case Kind::kArray:
      return "an array";
    case Kind::kStringOrArray:
      return "one of a string or array";
  }
  return "";
}

struct FieldRule {
  std::string_view name;
  Kind kind;
};

// Optional fields: absent or null is fine, anything else must have the kind.
absl::Status CheckOptional(const Json& body, std::initializer_list<FieldRule> rules) {
  for (const FieldRule& rule : rules) {
    auto it = body.find(rule.name);
    if (it == body.end() || it->is_null()) continue;
    if (!HasKind(*it, rule.kind)) return WrongType(rule.name, KindName(rule.kind), *it);
  }
  return absl::OkStatus();
}

absl::Status CheckModel(const Json& body) {
  auto it = body.find("model");
  if (it == body.end() || it->is_null()) return Missing("model");
  if (!it->is_string()) return WrongType("model", "a string", *it);
  if (it->get_ref<const std::string&>().empty()) {
    return InvalidRequest("Invalid value for 'model': it must not be empty.", "model");
  }
  return absl::OkStatus();
}

absl::Status CheckStreamFields(const Json& body) {
  if (absl::Status s =
          CheckOptional(body, {{"stream", Kind::kBool}, {"stream_options", Kind::kObject}});
      !s.ok()) {
    return s;
  }
  auto options = body.find("stream_options");
  if (options != body.end() && options->is_object()) {
    auto usage = options->find("include_usage");
    if (usage != options->end() && !usage->is_null() && !usage->is_boolean()) {
      return WrongType("stream_options.include_usage", "a boolean", *usage);
    }
  }
  return absl::OkStatus();
}

constexpr std::string_view kRoles[] = {"system",    "developer", "user",
                                       "assistant", "tool",      "function"};

absl::Status CheckMessage(const Json& message, size_t index) {
  // The parameter an error names, spelled out only for an error.
  auto at = [index](std::string_view rest = "") {
    return absl::StrCat("messages[", index, "]", Av(rest));
  };
  if (!message.is_object()) return WrongType(at(), "an object", message);
  auto role = message.find("role");
  if (role == message.end() || role->is_null()) return Missing(at(".role"));
  if (!role->is_string()) return WrongType(at(".role"), "a string", *role);
  const std::string& role_name = role->get_ref<const std::string&>();
  if (std::find(std::begin(kRoles), std::end(kRoles), role_name) == std::end(kRoles)) {
    return InvalidRequest(
        absl::StrCat("Invalid value: '", role_name,
                     "'. Supported values are: 'system', 'developer', 'user', 'assistant', "
                     "'tool', and 'function'."),
        at(".role"));
  }
  auto content = message.find("content");
  // An assistant turn may carry only tool calls; a legacy function result may be null.
  const bool content_optional = role_name == "assistant" || role_name == "function";
  if (content == message.end() || content->is_null()) {
    if (content_optional) return absl::OkStatus();
    return Missing(at(".content"));
  }
  if (content->is_string()) return absl::OkStatus();
  if (!content->is_array()) {
    return WrongType(at(".content"), "one of a string or array of objects", *content);
  }
  for (size_t i = 0; i < content->size(); ++i) {
    const Json& part = (*content)[i];
    auto part_at = [&](std::string_view rest = "") {
      return at(absl::StrCat(".content[", i, "]", Av(rest)));
    };
    if (!part.is_object()) return WrongType(part_at(), "an object", part);
    auto type = part.find("type");
    if (type == part.end() || type->is_null()) return Missing(part_at(".type"));
    if (!type->is_string()) return WrongType(part_at(".type"), "a string", *type);
    if (*type == "text") {
      auto text = part.find("text");
      if (text == part.end() || text->is_null()) return Missing(part_at(".text"));
      if (!text->is_string()) return WrongType(part_at(".text"), "a string", *text);
    }
  }
  return absl::OkStatus();
}

absl::Status ValidateChat(const Json& body) {
  if (absl::Status s = CheckModel(body); !s.ok()) return s;
  auto messages = body.find("messages");
  if (messages == body.end() || messages->is_null()) return Missing("messages");
  if (!messages->is_array()) return WrongType("messages", "an array", *messages);
  if (messages->empty()) {
    return InvalidRequest(
        "Invalid 'messages': empty array. Expected an array with minimum "
        "length 1, but got an empty array instead.",
        "messages");
  }
  for (size_t i = 0; i < messages->size(); ++i) {
    if (absl::Status s = CheckMessage((*messages)[i], i); !s.ok()) return s;
  }
  if (absl::Status s = CheckStreamFields(body); !s.ok()) return s;
  return CheckOptional(body, {{"temperature", Kind::kNumber},
                              {"top_p", Kind::kNumber},
                              {"frequency_penalty", Kind::kNumber},
                              {"presence_penalty", Kind::kNumber},
                              {"max_tokens", Kind::kInteger},
                              {"max_completion_tokens", Kind::kInteger},
                              {"n", Kind::kInteger},
                              {"seed", Kind::kInteger},
                              {"stop", Kind::kStringOrArray},
                              {"tools", Kind::kArray},
                              {"functions", Kind::kArray},
                              {"response_format", Kind::kObject},
                              {"logit_bias", Kind::kObject},
                              {"metadata", Kind::kObject},
                              {"user", Kind::kString}});
}

absl::Status ValidateCompletions(const Json& body) {
  if (absl::Status s = CheckModel(body); !s.ok()) return s;
  if (absl::Status s = CheckStreamFields(body); !s.ok()) return s;
  return CheckOptional(body, {{"prompt", Kind::kStringOrArray},
                              {"temperature", Kind::kNumber},
                              {"top_p", Kind::kNumber},
                              {"max_tokens", Kind::kInteger},
                              {"n", Kind::kInteger},
                              {"seed", Kind::kInteger},
                              {"stop", Kind::kStringOrArray},
                              {"user", Kind::kString}});
}

absl::Status ValidateEmbeddings(const Json& body) {
  if (absl::Status s = CheckModel(body); !s.ok()) return s;
  auto input = body.find("input");
  if (input == body.end() || input->is_null()) return Missing("input");
  if (!input->is_string() && !input->is_array()) {
    return WrongType("input", "one of a string or array", *input);
  }
  return CheckOptional(body, {{"encoding_format", Kind::kString},
                              {"dimensions", Kind::kInteger},
                              {"user", Kind::kString}});
}

}  // namespace

absl::Status ValidateOpenAiRequest(Operation op, const Json& body) {
  if (!body.is_object()) {
    return InvalidRequest(
        absl::StrCat("The request body must be a JSON object, not ", Av(TypeName(body)), "."));
  }
  switch (op) {
    case Operation::kChatCompletions:
    case Operation::kCompress:
      return ValidateChat(body);
    case Operation::kCompletions:
      return ValidateCompletions(body);
    case Operation::kEmbeddings:
      return ValidateEmbeddings(body);
    default:
      return absl::InternalError("the pipeline does not run this operation");
  }
}

}  // namespace terse::proxy
