#include "providers/curl_handles.h"

#include <utility>

namespace terse::providers::internal {

CURLM* NewLaneMulti(long per_host, long total, long cached) {
  CURLM* multi = curl_multi_init();
  if (multi == nullptr) return nullptr;
  curl_multi_setopt(multi, CURLMOPT_PIPELINING, CURLPIPE_MULTIPLEX);
  if (per_host > 0) curl_multi_setopt(multi, CURLMOPT_MAX_HOST_CONNECTIONS, per_host);
  if (total > 0) curl_multi_setopt(multi, CURLMOPT_MAX_TOTAL_CONNECTIONS, total);
  curl_multi_setopt(multi, CURLMOPT_MAXCONNECTS, cached);
  return multi;
}

CURL* CurlHandles::NewEasy(const HttpRequest& r, bool* configured) {
  *configured = false;
  if (idle_easy_.empty()) return curl_easy_init();
  for (size_t i = idle_easy_.size(); i-- > 0;) {
    IdleEasy& idle = idle_easy_[i];
    if (idle.configured && idle.insecure == r.insecure_skip_verify &&
        idle.ca_bundle == r.ca_bundle) {
      CURL* easy = idle.easy;
      idle_easy_.erase(idle_easy_.begin() + static_cast<ptrdiff_t>(i));
      *configured = true;
      return easy;
    }
  }
  CURL* easy = idle_easy_.back().easy;
  idle_easy_.pop_back();
  curl_easy_reset(easy);  // every option back to its default; connections live in the multi
  return easy;
}

void CurlHandles::Recycle(CURL* easy, const HttpRequest& r, bool configured) {
  if (idle_easy_.size() >= kMaxIdleEasy) {
    curl_easy_cleanup(easy);
    return;
  }
  IdleEasy idle;
  idle.easy = easy;
  idle.configured = configured;
  if (configured) {
    idle.ca_bundle = r.ca_bundle;
    idle.insecure = r.insecure_skip_verify;
  }
  idle_easy_.push_back(std::move(idle));
}

CURLU* CurlHandles::ParsedUrl(const std::string& text) {
  auto it = parsed_urls_.find(text);
  if (it != parsed_urls_.end()) return it->second;
  if (parsed_urls_.size() >= kMaxParsedUrls) return nullptr;
  CURLU* url = curl_url();
  if (url == nullptr) return nullptr;
  if (curl_url_set(url, CURLUPART_URL, text.c_str(), 0) != CURLUE_OK) {
    curl_url_cleanup(url);
    return nullptr;
  }
  parsed_urls_.emplace(text, url);
  return url;
}

void CurlHandles::Clear() {
  for (IdleEasy& idle : idle_easy_) curl_easy_cleanup(idle.easy);
  idle_easy_.clear();
  for (auto& [text, url] : parsed_urls_) curl_url_cleanup(url);
  parsed_urls_.clear();
}

}  // namespace terse::providers::internal
