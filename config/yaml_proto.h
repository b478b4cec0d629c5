// YAML text onto any protobuf message by reflection: field names are the keys, so the schema
// lives only in the .proto. Private to config/.
#pragma once

#include <google/protobuf/message.h>

#include <map>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "config/config.h"
#include "config/env_refs.h"

namespace terse::config {

struct YamlMapping {
  // False when the text was not YAML or not a mapping at the top level: nothing was mapped.
  bool parsed = false;
  // Every problem found, in document order, each with its path (`routes[2].compression.rate`).
  std::vector<ConfigError> errors;
  // Paths of the fields the YAML set explicitly (defaults fill only the others).
  std::set<std::string> present;
  // Every path the YAML mentions, numbered in document order (to report problems in that order).
  std::map<std::string, size_t> document_order;
  // Values read from the environment, to be kept out of every message.
  std::vector<std::string> env_values;
};

// Parses `yaml` and maps it onto `message` (which it clears first). Mapping rules:
// - a message is a mapping of field name to value; unknown keys, duplicate keys and wrong
//   shapes are errors; a null value leaves the field unset;
// - scalars: strings take any scalar; integers (range-checked), numbers, booleans
//   (true/false/yes/no/on/off); enums as lowercase value names (`azure_openai`);
// - repeated fields are sequences, map fields are mappings;
// - every scalar first has its `${VAR}` references expanded (see env_refs.h).
// Mapping goes on after an error, so one pass reports every problem.
YamlMapping MapYamlToProto(std::string_view yaml, const EnvLookup& env,
                           google::protobuf::Message& message);

// The YAML spelling of an enum value (`AZURE_OPENAI` -> `azure_openai`), and all the spellings
// a field accepts (the zero `*_UNSPECIFIED` value excluded).
std::string EnumYamlName(const google::protobuf::EnumValueDescriptor& value);
std::vector<std::string> EnumYamlNames(const google::protobuf::EnumDescriptor& type);

}  // namespace terse::config
