// The one JSON type of the project. Ordered, so fields terse does not know reach the
// upstream in the order the client sent them.
#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <utility>

namespace terse {
using Json = nlohmann::ordered_json;

// An object's members as the vector they are kept in, to reach one by its place: the object's
// own operator[] takes a key.
inline Json::object_t::Container& MemberList(Json::object_t& members) { return members; }
inline const Json::object_t::Container& MemberList(const Json::object_t& members) {
  return members;
}

// Appends a member that `members` does not hold yet. The ordered object finds a key by walking
// its members, in insert, operator[] and contains alike, so building an object of n members
// through them costs n^2 comparisons: 200,000 members kept a thread busy for 50 s. Callers that
// know a key is new (the keys of a map, of another object) append it here instead.
inline void AppendNewMember(Json::object_t& members, std::string key, Json value) {
  MemberList(members).emplace_back(std::move(key), std::move(value));
}
}  // namespace terse
