// Tenant API keys: `sk-terse-<id>-<secret>`. The public id names the key anywhere (logs,
// metrics, the ledger); the secret is shown once, when the key is made, and only a salted
// SHA-256 of it is ever stored.
#pragma once

#include <string>
#include <string_view>

#include "absl/status/statusor.h"

namespace terse::tenancy {

inline constexpr std::string_view kKeyPrefix = "sk-terse-";
inline constexpr size_t kKeyIdLength = 12;      // [a-z0-9]: about 62 bits
inline constexpr size_t kKeySecretLength = 43;  // [A-Za-z0-9]: about 256 bits

// A new key. `text` is the only place the secret appears: hand it to its owner and drop it.
struct GeneratedKey {
  std::string text;  // sk-terse-<id>-<secret>
  std::string id;
  std::string hash;  // for the config's `keys[].hash`
};

// Draws id, secret and salt from OpenSSL's CSPRNG (RAND_bytes); kInternal if it fails.
absl::StatusOr<GeneratedKey> GenerateKey();

// The parts of a presented key. Holds the secret: keep it no longer than the check.
struct PresentedKey {
  std::string id;
  std::string secret;
};

// kUnauthenticated when `text` is not shaped like a key; the message never quotes `text`.
absl::StatusOr<PresentedKey> ParseKey(std::string_view text);

// `sha256$<16-byte salt, hex>$<SHA-256(salt || secret), hex>`. kInternal if RAND_bytes fails.
absl::StatusOr<std::string> HashSecret(std::string_view secret);
// As above with a given salt (tests, and the verification itself).
std::string HashSecretWithSalt(std::string_view secret, std::string_view salt);

// Whether `secret` hashes to `stored` (a HashSecret result); false for a malformed `stored`.
// The digests are compared in constant time (CRYPTO_memcmp).
bool VerifySecret(std::string_view secret, std::string_view stored);

// Whether `id` / `hash` have the shapes above (for validating configs).
bool IsKeyId(std::string_view id);
bool IsKeyHash(std::string_view hash);

}  // namespace terse::tenancy
