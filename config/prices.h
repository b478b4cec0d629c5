// The price table file (config/prices.yaml) and the rules every price entry follows. Private to
// config/ (LoadPriceTableFile in config.h is the public door).
#pragma once

#include <string>
#include <vector>

#include "config/config.h"
#include "terse/v1/config.pb.h"

namespace terse::config {

// Problems of price entries, each at `<path>.<key>.<field>`.
std::vector<ConfigError> ValidatePrices(
    const std::string& path, const google::protobuf::Map<std::string, v1::ModelPrice>& models);

// Reads `tenancy.prices_file`, validates it and makes `tenancy.prices` the effective table: the
// file's entries with the config's entries (already validated) put over them whole; sets
// `prices_as_of`. Problems in the file are reported as `<file>: models.<key>.<field>: ...`.
std::vector<ConfigError> MergePriceFile(v1::Tenancy& tenancy);

}  // namespace terse::config
