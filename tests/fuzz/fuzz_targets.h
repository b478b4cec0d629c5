// Properties of the parsers that read untrusted bytes (clients' bodies, upstreams' answers), as
// functions of one input: run by libFuzzer (tests/fuzz/libfuzzer_main.cc, TERSE_FUZZ=ON) to search
// for a counterexample, and over the checked-in corpus by json_test and providers_test
// (tests/fuzz/corpus.h), so that every input that once broke a property keeps being tried. The
// JSON properties are defined in json_targets.cc, the providers' in providers_targets.cc.
#pragma once

#include <string>
#include <string_view>

namespace terse::fuzz {

// Each returns "" when the property holds for `input`, else what broke.

// The JSON codec.

// ParseJson, IsValidJson and DumpJson give nlohmann's verdicts and values (but for a NUL byte
// between tokens, which nlohmann takes for the end of the text and terse refuses), a dumped value
// parses back to itself; ForEachMember and ForEachElement hand out valid values.
std::string CheckJsonText(std::string_view input);

// A WireJson's edits (SetMember, EraseMember, SetMembers, as the first bytes of `input` script
// them) leave a text that parses to the value the same edits make of the parsed value, whether
// the text was checked by the WireJson or parsed beforehand, and FindMemberText agrees with it.
std::string CheckWireJson(std::string_view input);

// The providers' parsers.

// Http1ResponseReader reads the same response (head, body, end, keep-alive, consumed bytes,
// failure) whether the bytes arrive whole or in pieces; the first bytes of `input` choose the
// pieces and the request kind.
std::string CheckHttp1Response(std::string_view input);

// SseParser gives the same events, the same last event and the same failure whether the bytes
// arrive whole or in pieces, with a small event limit or the default one.
std::string CheckSse(std::string_view input);

}  // namespace terse::fuzz
