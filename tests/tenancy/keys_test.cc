// Tenant API keys: their shape, parsing, hashing and verification.
#include "tenancy/keys.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <set>

#include "tests/support/status_matchers.h"

namespace terse::tenancy {
namespace {

using ::terse::testing::IsOk;
using ::terse::testing::StatusIs;
using ::testing::HasSubstr;
using ::testing::MatchesRegex;
using ::testing::Not;

TEST(KeysTest, GeneratedKeysHaveTheDocumentedShape) {
  absl::StatusOr<GeneratedKey> key = GenerateKey();
  ASSERT_THAT(key, IsOk());
  EXPECT_THAT(key->text, MatchesRegex("sk-terse-[a-z0-9]{12}-[A-Za-z0-9]{43}"));
  EXPECT_EQ(key->text.substr(9, 12), key->id);
  EXPECT_TRUE(IsKeyId(key->id));
  EXPECT_TRUE(IsKeyHash(key->hash));
  EXPECT_THAT(key->hash, MatchesRegex("sha256\\$[0-9a-f]{32}\\$[0-9a-f]{64}"));
}

TEST(KeysTest, KeysAndSaltsAreFresh) {
  std::set<std::string> ids, texts, salts;
  for (int i = 0; i < 50; ++i) {
    absl::StatusOr<GeneratedKey> key = GenerateKey();
    ASSERT_THAT(key, IsOk());
    ids.insert(key->id);
    texts.insert(key->text);
    salts.insert(key->hash.substr(7, 32));
  }
  EXPECT_EQ(ids.size(), 50u);
  EXPECT_EQ(texts.size(), 50u);
  EXPECT_EQ(salts.size(), 50u);
}

TEST(KeysTest, ParseSplitsIdAndSecret) {
  absl::StatusOr<GeneratedKey> key = GenerateKey();
  ASSERT_THAT(key, IsOk());
  absl::StatusOr<PresentedKey> parsed = ParseKey(key->text);
  ASSERT_THAT(parsed, IsOk());
  EXPECT_EQ(parsed->id, key->id);
  EXPECT_EQ(parsed->secret, key->text.substr(22));
  EXPECT_TRUE(VerifySecret(parsed->secret, key->hash));
}

TEST(KeysTest, ParseRefusesOtherShapesWithoutQuotingThem) {
  const std::string secret(43, 'A');
  for (const std::string& text : {
           std::string("sk-proj-abcdefabcdef-") + secret,      // another prefix
           "sk-terse-abcdefabcdef" + secret,                   // no separator
           "sk-terse-abcdefabcde-" + secret + "A",             // short id
           "sk-terse-ABCDEFABCDEF-" + secret,                  // upper-case id
           "sk-terse-abcdefabcdef-" + secret.substr(1),        // short secret
           "sk-terse-abcdefabcdef-" + secret + "B",            // long secret
           "sk-terse-abcdefabcdef-" + secret.substr(1) + "-",  // a '-' in the secret
           std::string(""),
       }) {
    absl::StatusOr<PresentedKey> parsed = ParseKey(text);
    EXPECT_THAT(parsed, StatusIs(absl::StatusCode::kUnauthenticated)) << text;
    if (!text.empty()) {
      EXPECT_THAT(std::string(parsed.status().message()), Not(HasSubstr(secret.substr(0, 20))));
    }
  }
  EXPECT_THAT(ParseKey("sk-terse-abcdefabcdef-" + secret), IsOk());
}

TEST(KeysTest, TheHashNeverShowsTheSecret) {
  absl::StatusOr<GeneratedKey> key = GenerateKey();
  ASSERT_THAT(key, IsOk());
  const std::string secret = key->text.substr(22);
  EXPECT_NE(key->hash, secret);
  EXPECT_THAT(key->hash, Not(HasSubstr(secret)));
  EXPECT_THAT(key->hash, Not(HasSubstr(secret.substr(0, 8))));
  EXPECT_THAT(key->hash, Not(HasSubstr(key->text)));
}

TEST(KeysTest, TheDigestIsSha256OfSaltThenSecret) {
  // FIPS 180-2's test vector: SHA-256("abc"), split as salt "a" and secret "bc".
  EXPECT_EQ(HashSecretWithSalt("bc", "a"),
            "sha256$61$ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

TEST(KeysTest, VerifyAcceptsOnlyTheExactSecret) {
  const std::string salt(16, '\x5a');
  const std::string secret = "Zm9vYmFyYmF6cXV4MTIzNDU2Nzg5MGFiY2RlZmdoaWo";
  const std::string stored = HashSecretWithSalt(secret, salt);
  ASSERT_TRUE(IsKeyHash(stored));
  EXPECT_TRUE(VerifySecret(secret, stored));
  std::string changed = secret;
  for (size_t i : {size_t{0}, secret.size() / 2, secret.size() - 1}) {
    changed = secret;
    changed[i] = changed[i] == 'A' ? 'B' : 'A';
    EXPECT_FALSE(VerifySecret(changed, stored)) << i;
  }
  EXPECT_FALSE(VerifySecret(secret.substr(1), stored));
  EXPECT_FALSE(VerifySecret(secret + "x", stored));
  EXPECT_FALSE(VerifySecret("", stored));
  // The same secret under another salt is another hash.
  EXPECT_NE(HashSecretWithSalt(secret, std::string(16, '\x5b')), stored);
}

TEST(KeysTest, MalformedStoredHashesVerifyNothing) {
  const std::string good = HashSecretWithSalt("s", std::string(16, '\0'));
  ASSERT_TRUE(IsKeyHash(good));
  for (const std::string& stored : {
           std::string(""), std::string("s"), "md5" + good.substr(6),
           good.substr(0, good.size() - 1), good + "0",
           good.substr(0, 10) + "G" + good.substr(11),  // not lower-case hex
       }) {
    EXPECT_FALSE(IsKeyHash(stored)) << stored;
    EXPECT_FALSE(VerifySecret("s", stored)) << stored;
  }
}

}  // namespace
}  // namespace terse::tenancy
