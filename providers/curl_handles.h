// A lane's libcurl handles: its multi handle, and reusable easy handles and parsed URLs, which
// only the lane's driver thread uses.
#pragma once

#include <curl/curl.h>

#include <cstddef>
#include <string>
#include <unordered_map>
#include <vector>

#include "providers/http_client.h"

namespace terse::providers::internal {

// Divides a connection limit (0: none) among `lanes`, rounding up.
inline long PerLane(int limit, int lanes) {
  return limit > 0 ? static_cast<long>((limit + lanes - 1) / lanes) : 0L;
}

// A lane's multi handle: HTTP/2 multiplexing, and the lane's share of the connection limits
// (0: no limit; `cached`: idle connections kept for reuse). Null when libcurl cannot make one.
CURLM* NewLaneMulti(long per_host, long total, long cached);

// Easy handles are reused: curl_easy_init allocates and fills ~20 KB, and a handle keeps the
// options that are the same for every exchange with its TLS settings, so the next exchange with
// those settings sets only its own (no curl_easy_reset, a few setopt calls). URLs are parsed once:
// libcurl parses CURLOPT_URL anew for every exchange, while a parsed handle (CURLOPT_CURLU) is
// only copied.
class CurlHandles {
 public:
  CurlHandles() = default;
  ~CurlHandles() { Clear(); }
  CurlHandles(const CurlHandles&) = delete;
  CurlHandles& operator=(const CurlHandles&) = delete;

  // A handle for `r`; `*configured` tells whether its shared options are set for `r` already.
  // Null only when libcurl cannot allocate one.
  CURL* NewEasy(const HttpRequest& r, bool* configured);

  // Takes back a handle that is in no multi handle, for NewEasy. `configured`: its shared options
  // are those of `r` (false after a failed set-up, so the next user resets it).
  void Recycle(CURL* easy, const HttpRequest& r, bool configured);

  // The URL `text` parsed once. Null when the text does not parse strictly (libcurl then gets
  // the text and says what is wrong) or when kMaxParsedUrls distinct URLs are kept already.
  // Valid until Clear.
  CURLU* ParsedUrl(const std::string& text);

  // Frees every idle handle, then the parsed URLs (after the handles that may use them). Handles
  // given out must have been cleaned up or recycled before.
  void Clear();

 private:
  struct IdleEasy {
    CURL* easy = nullptr;
    bool configured = false;  // the shared options are set, for these TLS settings:
    std::string ca_bundle;
    bool insecure = false;
  };
  static constexpr size_t kMaxIdleEasy = 128;
  static constexpr size_t kMaxParsedUrls = 256;
  std::vector<IdleEasy> idle_easy_;
  std::unordered_map<std::string, CURLU*> parsed_urls_;
};

}  // namespace terse::providers::internal
