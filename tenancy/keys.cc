// Key generation, parsing and verification on OpenSSL's libcrypto.
#include "tenancy/keys.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include <array>
#include <cstdint>
#include <vector>

#include "absl/status/status.h"

namespace terse::tenancy {
namespace {

constexpr std::string_view kIdAlphabet = "abcdefghijklmnopqrstuvwxyz0123456789";
constexpr std::string_view kSecretAlphabet =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
constexpr std::string_view kHashScheme = "sha256$";
constexpr size_t kSaltBytes = 16;
constexpr size_t kDigestBytes = 32;
using Digest = std::array<uint8_t, kDigestBytes>;

absl::Status RandomBytes(uint8_t* out, size_t n) {
  if (RAND_bytes(out, static_cast<int>(n)) != 1) {
    return absl::InternalError("OpenSSL RAND_bytes failed: no key was made");
  }
  return absl::OkStatus();
}

// `length` characters drawn uniformly from `alphabet` (rejection sampling: no modulo bias).
absl::StatusOr<std::string> RandomString(std::string_view alphabet, size_t length) {
  const unsigned limit = 256 - 256 % alphabet.size();
  std::string out;
  std::array<uint8_t, 64> buffer;
  while (out.size() < length) {
    if (absl::Status s = RandomBytes(buffer.data(), buffer.size()); !s.ok()) return s;
    for (uint8_t b : buffer) {
      if (b >= limit) continue;
      out.push_back(alphabet[b % alphabet.size()]);
      if (out.size() == length) break;
    }
  }
  return out;
}

bool AllOf(std::string_view s, std::string_view alphabet) {
  return s.find_first_not_of(alphabet) == std::string_view::npos;
}

bool IsLowerHex(std::string_view s) { return AllOf(s, "0123456789abcdef"); }

std::string Hex(std::string_view bytes) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string hex;
  for (unsigned char c : bytes) {
    hex.push_back(kDigits[c >> 4]);
    hex.push_back(kDigits[c & 15]);
  }
  return hex;
}

// `hex` is lower-case hex of even length (checked by IsKeyHash).
std::string Unhex(std::string_view hex) {
  auto value = [](char c) { return c <= '9' ? c - '0' : c - 'a' + 10; };
  std::string bytes;
  for (size_t i = 0; i + 1 < hex.size(); i += 2) {
    bytes.push_back(static_cast<char>(value(hex[i]) << 4 | value(hex[i + 1])));
  }
  return bytes;
}

Digest SaltedDigest(std::string_view salt, std::string_view secret) {
  std::string input;
  input.reserve(salt.size() + secret.size());
  input.append(salt).append(secret);
  // Fetched once: EVP_sha256() makes each EVP_Digest look the implementation up again.
  static EVP_MD* const sha256 = EVP_MD_fetch(nullptr, "SHA256", nullptr);
  Digest digest{};
  unsigned int length = 0;
  EVP_Digest(input.data(), input.size(), digest.data(), &length,
             sha256 != nullptr ? sha256 : EVP_sha256(), nullptr);
  OPENSSL_cleanse(input.data(), input.size());
  return digest;
}

std::string_view AsChars(const Digest& digest) {
  return std::string_view(reinterpret_cast<const char*>(digest.data()), digest.size());
}

}  // namespace

absl::StatusOr<GeneratedKey> GenerateKey() {
  absl::StatusOr<std::string> id = RandomString(kIdAlphabet, kKeyIdLength);
  if (!id.ok()) return id.status();
  absl::StatusOr<std::string> secret = RandomString(kSecretAlphabet, kKeySecretLength);
  if (!secret.ok()) return secret.status();
  absl::StatusOr<std::string> hash = HashSecret(*secret);
  if (!hash.ok()) return hash.status();
  GeneratedKey key{std::string(kKeyPrefix) + *id + "-" + *secret, *id, *hash};
  OPENSSL_cleanse(secret->data(), secret->size());
  return key;
}

absl::StatusOr<PresentedKey> ParseKey(std::string_view text) {
  // The id and secret alphabets have no '-', so the shape is unambiguous.
  auto malformed = [] {
    return absl::UnauthenticatedError("invalid API key: expected sk-terse-<id>-<secret>");
  };
  if (!text.starts_with(kKeyPrefix)) return malformed();
  text.remove_prefix(kKeyPrefix.size());
  if (text.size() != kKeyIdLength + 1 + kKeySecretLength || text[kKeyIdLength] != '-') {
    return malformed();
  }
  PresentedKey key{std::string(text.substr(0, kKeyIdLength)),
                   std::string(text.substr(kKeyIdLength + 1))};
  if (!IsKeyId(key.id) || !AllOf(key.secret, kSecretAlphabet)) return malformed();
  return key;
}

absl::StatusOr<std::string> HashSecret(std::string_view secret) {
  std::array<uint8_t, kSaltBytes> salt;
  if (absl::Status s = RandomBytes(salt.data(), salt.size()); !s.ok()) return s;
  return HashSecretWithSalt(
      secret, std::string_view(reinterpret_cast<const char*>(salt.data()), salt.size()));
}

std::string HashSecretWithSalt(std::string_view secret, std::string_view salt) {
  return std::string(kHashScheme) + Hex(salt) + "$" + Hex(AsChars(SaltedDigest(salt, secret)));
}

bool VerifySecret(std::string_view secret, std::string_view stored) {
  if (!IsKeyHash(stored)) return false;
  const std::string salt = Unhex(stored.substr(kHashScheme.size(), 2 * kSaltBytes));
  const std::string expected = Unhex(stored.substr(kHashScheme.size() + 2 * kSaltBytes + 1));
  const Digest digest = SaltedDigest(salt, secret);
  return CRYPTO_memcmp(digest.data(), expected.data(), digest.size()) == 0;
}

bool IsKeyId(std::string_view id) { return id.size() == kKeyIdLength && AllOf(id, kIdAlphabet); }

bool IsKeyHash(std::string_view hash) {
  const size_t salt_hex = 2 * kSaltBytes, digest_hex = 2 * kDigestBytes;
  if (!hash.starts_with(kHashScheme)) return false;
  hash.remove_prefix(kHashScheme.size());
  return hash.size() == salt_hex + 1 + digest_hex && hash[salt_hex] == '$' &&
         IsLowerHex(hash.substr(0, salt_hex)) && IsLowerHex(hash.substr(salt_hex + 1));
}

}  // namespace terse::tenancy
