// The mapper keeps going after a problem (skipping only the offending value) so a config with
// several mistakes is reported in one go.
#include "config/yaml_proto.h"

#include <yaml-cpp/yaml.h>

#include <cctype>
#include <charconv>
#include <cmath>
#include <limits>
#include <optional>

#include "absl/strings/ascii.h"
#include "absl/strings/str_join.h"
#include "config/suggest.h"

namespace terse::config {
namespace {

namespace pb = google::protobuf;
using FD = pb::FieldDescriptor;

// A scalar after `${VAR}` expansion; `from_env` values are never quoted in messages.
struct Scalar {
  std::string text;
  bool from_env = false;
};

std::string Quote(const Scalar& s) {
  if (s.from_env) return "a value from the environment (not shown)";
  constexpr size_t kMax = 60;
  if (s.text.size() > kMax) return "\"" + s.text.substr(0, kMax) + "...\"";
  return "\"" + s.text + "\"";
}

std::string Describe(const YAML::Node& node) {
  switch (node.Type()) {
    case YAML::NodeType::Map:
      return "a mapping";
    case YAML::NodeType::Sequence:
      return "a sequence";
    case YAML::NodeType::Null:
      return "null";
    default:
      return "a scalar";
  }
}

std::string Join(const std::string& path, const std::string& key) {
  return path.empty() ? key : path + "." + key;
}

class Mapper {
 public:
  Mapper(const EnvLookup& env, YamlMapping& out) : env_(env), out_(out) {}

  void Message(const YAML::Node& node, const std::string& path, pb::Message& message) {
    const pb::Descriptor& type = *message.GetDescriptor();
    ForEachKey(node, path, [&](const std::string& key, const std::string& field_path,
                               const YAML::Node& value) {
      const FD* field = type.FindFieldByName(key);
      if (field == nullptr) {
        Error(field_path, "unknown field \"" + key + "\"" + DidYouMean(key, FieldNames(type)));
        return;
      }
      if (value.IsNull()) return;  // `key:` with no value leaves the field unset
      Field(value, field_path, message, *field);
    });
  }

 private:
  // Calls `visit(key, key_path, value)` for each entry of the mapping `node`, in order, after the
  // checks every mapping shares: a mapping at all, plain keys, no key twice.
  template <typename Visit>
  void ForEachKey(const YAML::Node& node, const std::string& path, Visit&& visit) {
    if (!node.IsMap()) {
      Error(path, "expected a mapping, got " + DescribeValue(node));
      return;
    }
    std::set<std::string> seen;
    for (auto it = node.begin(); it != node.end(); ++it) {
      if (!it->first.IsScalar()) {
        Error(path, "a key must be a plain name, got " + Describe(it->first));
        continue;
      }
      const std::string key = it->first.Scalar();
      const std::string key_path = Join(path, key);
      this->Visit(key_path);
      if (!seen.insert(key).second) {
        Error(key_path, "duplicate key");
        continue;
      }
      visit(key, key_path, it->second);
    }
  }

  void Field(const YAML::Node& node, const std::string& path, pb::Message& message,
             const FD& field) {
    out_.present.insert(path);
    if (field.is_map()) {
      Map(node, path, message, field);
    } else if (field.is_repeated()) {
      if (!node.IsSequence()) {
        Error(path, "expected a sequence, got " + DescribeValue(node));
        return;
      }
      for (size_t i = 0; i < node.size(); ++i) {
        const std::string element_path = path + "[" + std::to_string(i) + "]";
        out_.present.insert(element_path);
        Visit(element_path);
        if (field.cpp_type() == FD::CPPTYPE_MESSAGE) {
          pb::Message* element = message.GetReflection()->AddMessage(&message, &field);
          Message(node[i], element_path, *element);
        } else {
          SetScalar(node[i], element_path, message, field);
        }
      }
    } else if (field.cpp_type() == FD::CPPTYPE_MESSAGE) {
      Message(node, path, *message.GetReflection()->MutableMessage(&message, &field));
    } else {
      SetScalar(node, path, message, field);
    }
  }

  // A map field is a repeated entry message with `key` and `value` fields.
  void Map(const YAML::Node& node, const std::string& path, pb::Message& message, const FD& field) {
    ForEachKey(node, path, [&](const std::string& key, const std::string& entry_path,
                               const YAML::Node& value) {
      pb::Message* entry = message.GetReflection()->AddMessage(&message, &field);
      const pb::Descriptor& entry_type = *entry->GetDescriptor();
      // Map keys are taken literally (no ${VAR}); values follow the usual scalar rules.
      SetFromText(Scalar{key, false}, entry_path, *entry, *entry_type.FindFieldByName("key"));
      const FD& value_field = *entry_type.FindFieldByName("value");
      if (value_field.cpp_type() == FD::CPPTYPE_MESSAGE) {
        Message(value, entry_path, *entry->GetReflection()->MutableMessage(entry, &value_field));
      } else {
        SetScalar(value, entry_path, *entry, value_field);
      }
    });
  }

  void SetScalar(const YAML::Node& node, const std::string& path, pb::Message& message,
                 const FD& field) {
    if (!node.IsScalar()) {
      Error(path, "expected " + Expected(field) + ", got " + Describe(node));
      return;
    }
    absl::StatusOr<Expanded> expanded = ExpandEnvRefs(node.Scalar(), env_);
    if (!expanded.ok()) {
      Error(path, std::string(expanded.status().message()));
      return;
    }
    out_.env_values.insert(out_.env_values.end(), expanded->env_values.begin(),
                           expanded->env_values.end());
    SetFromText(Scalar{expanded->text, !expanded->env_values.empty()}, path, message, field);
  }

  void SetFromText(const Scalar& s, const std::string& path, pb::Message& message,
                   const FD& field) {
    const pb::Reflection& r = *message.GetReflection();
    const bool repeated = field.is_repeated();
    auto fail = [&] { Error(path, "expected " + Expected(field) + ", got " + Quote(s)); };
    switch (field.cpp_type()) {
      case FD::CPPTYPE_STRING:
        repeated ? r.AddString(&message, &field, s.text) : r.SetString(&message, &field, s.text);
        return;
      case FD::CPPTYPE_BOOL: {
        std::optional<bool> b = ParseBool(s.text);
        if (!b) return fail();
        repeated ? r.AddBool(&message, &field, *b) : r.SetBool(&message, &field, *b);
        return;
      }
      case FD::CPPTYPE_DOUBLE:
      case FD::CPPTYPE_FLOAT: {
        std::optional<double> d = ParseDouble(s.text);
        if (!d) return fail();
        if (field.cpp_type() == FD::CPPTYPE_DOUBLE) {
          repeated ? r.AddDouble(&message, &field, *d) : r.SetDouble(&message, &field, *d);
        } else {
          float f = static_cast<float>(*d);
          repeated ? r.AddFloat(&message, &field, f) : r.SetFloat(&message, &field, f);
        }
        return;
      }
      case FD::CPPTYPE_INT32:
      case FD::CPPTYPE_INT64:
      case FD::CPPTYPE_UINT32:
      case FD::CPPTYPE_UINT64:
        return SetInteger(s, path, message, field);
      case FD::CPPTYPE_ENUM: {
        const pb::EnumDescriptor& type = *field.enum_type();
        std::vector<std::string> names = EnumYamlNames(type);
        for (int i = 0; i < type.value_count(); ++i) {
          if (EnumYamlName(*type.value(i)) == s.text && type.value(i)->number() != 0) {
            repeated ? r.AddEnumValue(&message, &field, type.value(i)->number())
                     : r.SetEnumValue(&message, &field, type.value(i)->number());
            return;
          }
        }
        Error(path, "unknown value " + Quote(s) + (s.from_env ? "" : DidYouMean(s.text, names)) +
                        "; expected one of: " + absl::StrJoin(names, ", "));
        return;
      }
      case FD::CPPTYPE_MESSAGE:
        return fail();  // callers route messages elsewhere
    }
  }

  void SetInteger(const Scalar& s, const std::string& path, pb::Message& message, const FD& field) {
    const pb::Reflection& r = *message.GetReflection();
    const bool repeated = field.is_repeated();
    const bool is_unsigned =
        field.cpp_type() == FD::CPPTYPE_UINT32 || field.cpp_type() == FD::CPPTYPE_UINT64;
    const bool is_32 =
        field.cpp_type() == FD::CPPTYPE_INT32 || field.cpp_type() == FD::CPPTYPE_UINT32;
    std::string text = s.text;
    if (!text.empty() && text[0] == '+') text.erase(0, 1);
    const char* begin = text.data();
    const char* end = text.data() + text.size();
    if (is_unsigned) {
      uint64_t v = 0;
      auto [ptr, ec] = std::from_chars(begin, end, v);
      if (text.empty() || ptr != end || ec == std::errc::invalid_argument) {
        Error(path, "expected a non-negative integer, got " + Quote(s));
        return;
      }
      const uint64_t max =
          is_32 ? std::numeric_limits<uint32_t>::max() : std::numeric_limits<uint64_t>::max();
      if (ec == std::errc::result_out_of_range || v > max) {
        Error(path, Quote(s) + " is out of range (at most " + std::to_string(max) + ")");
        return;
      }
      if (is_32) {
        repeated ? r.AddUInt32(&message, &field, v) : r.SetUInt32(&message, &field, v);
      } else {
        repeated ? r.AddUInt64(&message, &field, v) : r.SetUInt64(&message, &field, v);
      }
      return;
    }
    int64_t v = 0;
    auto [ptr, ec] = std::from_chars(begin, end, v);
    if (text.empty() || ptr != end || ec == std::errc::invalid_argument) {
      Error(path, "expected an integer, got " + Quote(s));
      return;
    }
    const int64_t min =
        is_32 ? std::numeric_limits<int32_t>::min() : std::numeric_limits<int64_t>::min();
    const int64_t max =
        is_32 ? std::numeric_limits<int32_t>::max() : std::numeric_limits<int64_t>::max();
    if (ec == std::errc::result_out_of_range || v < min || v > max) {
      Error(path, Quote(s) + " is out of range (" + std::to_string(min) + " to " +
                      std::to_string(max) + ")");
      return;
    }
    if (is_32) {
      repeated ? r.AddInt32(&message, &field, v) : r.SetInt32(&message, &field, v);
    } else {
      repeated ? r.AddInt64(&message, &field, v) : r.SetInt64(&message, &field, v);
    }
  }

  static std::optional<bool> ParseBool(const std::string& text) {
    std::string t = absl::AsciiStrToLower(text);
    if (t == "true" || t == "yes" || t == "on") return true;
    if (t == "false" || t == "no" || t == "off") return false;
    return std::nullopt;
  }

  static std::optional<double> ParseDouble(const std::string& text) {
    std::string t = text;
    if (!t.empty() && t[0] == '+') t.erase(0, 1);
    double v = 0;
    auto [ptr, ec] = std::from_chars(t.data(), t.data() + t.size(), v);
    if (t.empty() || ec != std::errc() || ptr != t.data() + t.size() || !std::isfinite(v)) {
      return std::nullopt;
    }
    return v;
  }

  static std::string Expected(const FD& field) {
    switch (field.cpp_type()) {
      case FD::CPPTYPE_STRING:
        return "a string";
      case FD::CPPTYPE_BOOL:
        return "true or false";
      case FD::CPPTYPE_DOUBLE:
      case FD::CPPTYPE_FLOAT:
        return "a number";
      case FD::CPPTYPE_UINT32:
      case FD::CPPTYPE_UINT64:
        return "a non-negative integer";
      case FD::CPPTYPE_INT32:
      case FD::CPPTYPE_INT64:
        return "an integer";
      case FD::CPPTYPE_ENUM:
        return "one of " + absl::StrJoin(EnumYamlNames(*field.enum_type()), ", ");
      case FD::CPPTYPE_MESSAGE:
        return "a mapping";
    }
    return "a value";
  }

  // A scalar is quoted (after expansion) so the user sees what was wrong.
  std::string DescribeValue(const YAML::Node& node) {
    if (!node.IsScalar()) return Describe(node);
    absl::StatusOr<Expanded> expanded = ExpandEnvRefs(node.Scalar(), env_);
    if (!expanded.ok()) return "a scalar";
    return Quote(Scalar{expanded->text, !expanded->env_values.empty()});
  }

  static std::vector<std::string> FieldNames(const pb::Descriptor& type) {
    std::vector<std::string> names;
    for (int i = 0; i < type.field_count(); ++i) names.push_back(type.field(i)->name());
    return names;
  }

  void Visit(const std::string& path) {
    out_.document_order.emplace(path, out_.document_order.size());
  }

  void Error(const std::string& path, std::string message) {
    out_.errors.push_back(ConfigError{path, std::move(message)});
  }

  const EnvLookup& env_;
  YamlMapping& out_;
};

}  // namespace

std::string EnumYamlName(const pb::EnumValueDescriptor& value) {
  return absl::AsciiStrToLower(value.name());
}

std::vector<std::string> EnumYamlNames(const pb::EnumDescriptor& type) {
  std::vector<std::string> names;
  for (int i = 0; i < type.value_count(); ++i) {
    if (type.value(i)->number() == 0) continue;
    names.push_back(EnumYamlName(*type.value(i)));
  }
  return names;
}

YamlMapping MapYamlToProto(std::string_view yaml, const EnvLookup& env, pb::Message& message) {
  YamlMapping out;
  message.Clear();
  YAML::Node root;
  try {
    root = YAML::Load(std::string(yaml));
  } catch (const YAML::Exception& e) {
    std::string where;
    if (!e.mark.is_null()) {
      where = "line " + std::to_string(e.mark.line + 1) + ", column " +
              std::to_string(e.mark.column + 1) + ": ";
    }
    out.errors.push_back(ConfigError{"", "invalid YAML: " + where + e.msg});
    return out;
  }
  if (root.IsNull()) {  // an empty document: all defaults
    out.parsed = true;
    return out;
  }
  if (!root.IsMap()) {
    out.errors.push_back(
        ConfigError{"", "expected a mapping at the top level, got " + Describe(root)});
    return out;
  }
  out.parsed = true;
  Mapper(env, out).Message(root, "", message);
  return out;
}

}  // namespace terse::config
