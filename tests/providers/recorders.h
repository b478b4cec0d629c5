// Handlers and sinks that record what they hear, with bounded waits, for the providers tests.
#pragma once

#include <condition_variable>
#include <mutex>
#include <optional>
#include <set>
#include <span>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "base/json.h"
#include "providers/http_client.h"
#include "providers/provider.h"

namespace terse::providers {

// Records one HTTP exchange.
class RecordingHttpHandler : public HttpHandler {
 public:
  void OnHead(const HttpResponseHead& head) override {
    std::lock_guard<std::mutex> lock(mu_);
    head_ = head;
    ++heads_;
    cv_.notify_all();
  }
  bool OnBody(std::string_view bytes) override {
    std::lock_guard<std::mutex> lock(mu_);
    threads_.insert(std::this_thread::get_id());
    body_.append(bytes);
    ++body_calls_;
    cv_.notify_all();
    return !abort_on_body_;
  }
  void OnComplete(absl::Status status) override {
    std::lock_guard<std::mutex> lock(mu_);
    status_ = status;
    ++completions_;
    threads_.insert(std::this_thread::get_id());
    cv_.notify_all();
  }

  void set_abort_on_body() {
    std::lock_guard<std::mutex> lock(mu_);
    abort_on_body_ = true;
  }
  // Waits for OnComplete; false on timeout.
  bool WaitDone(absl::Duration timeout = absl::Seconds(10)) {
    std::unique_lock<std::mutex> lock(mu_);
    return cv_.wait_for(lock, absl::ToChronoMilliseconds(timeout),
                        [&] { return completions_ > 0; });
  }
  // Waits until the body contains `text`; false on timeout.
  bool WaitBodyContains(const std::string& text, absl::Duration timeout = absl::Seconds(10)) {
    std::unique_lock<std::mutex> lock(mu_);
    return cv_.wait_for(lock, absl::ToChronoMilliseconds(timeout),
                        [&] { return body_.find(text) != std::string::npos; });
  }
  absl::Status status() {
    std::lock_guard<std::mutex> lock(mu_);
    return status_;
  }
  std::string body() {
    std::lock_guard<std::mutex> lock(mu_);
    return body_;
  }
  HttpResponseHead head() {
    std::lock_guard<std::mutex> lock(mu_);
    return head_;
  }
  int heads() {
    std::lock_guard<std::mutex> lock(mu_);
    return heads_;
  }
  int completions() {
    std::lock_guard<std::mutex> lock(mu_);
    return completions_;
  }
  // The threads the callbacks ran on.
  std::set<std::thread::id> threads() {
    std::lock_guard<std::mutex> lock(mu_);
    return threads_;
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  HttpResponseHead head_;
  std::string body_;
  int heads_ = 0;
  int body_calls_ = 0;
  int completions_ = 0;
  bool abort_on_body_ = false;
  absl::Status status_;
  std::set<std::thread::id> threads_;
};

// Records one provider call.
class RecordingSink : public ResponseSink {
 public:
  void OnResponse(json::WireJson body) override {
    std::lock_guard<std::mutex> lock(mu_);
    threads_.insert(std::this_thread::get_id());
    response_relayed_as_received_ = body.has_text();
    response_text_ = body.text();
    response_ = body.json();
    ++responses_;
    cv_.notify_all();
  }
  void OnChunks(std::span<json::WireJson> chunks) override {
    std::lock_guard<std::mutex> lock(mu_);
    threads_.insert(std::this_thread::get_id());
    for (const json::WireJson& chunk : chunks) {
      chunks_relayed_as_received_.push_back(chunk.has_text());  // before text() makes one
      chunk_texts_.push_back(chunk.text());
      chunks_.push_back(chunk.json());
    }
    ++chunk_calls_;
    cv_.notify_all();
  }
  void OnDone(absl::Status status) override {
    std::lock_guard<std::mutex> lock(mu_);
    threads_.insert(std::this_thread::get_id());
    status_ = status;
    ++dones_;
    cv_.notify_all();
  }

  bool WaitDone(absl::Duration timeout = absl::Seconds(10)) {
    std::unique_lock<std::mutex> lock(mu_);
    return cv_.wait_for(lock, absl::ToChronoMilliseconds(timeout), [&] { return dones_ > 0; });
  }
  bool WaitChunks(size_t n, absl::Duration timeout = absl::Seconds(10)) {
    std::unique_lock<std::mutex> lock(mu_);
    return cv_.wait_for(lock, absl::ToChronoMilliseconds(timeout), [&] {
      return chunks_.size() >= n || dones_ > 0;
    }) && chunks_.size() >= n;
  }
  absl::Status status() {
    std::lock_guard<std::mutex> lock(mu_);
    return status_;
  }
  Json response() {
    std::lock_guard<std::mutex> lock(mu_);
    return response_;
  }
  std::vector<Json> chunks() {
    std::lock_guard<std::mutex> lock(mu_);
    return chunks_;
  }
  // The text of each chunk as the sink got it, and whether it was the upstream's text (unparsed).
  std::vector<std::string> chunk_texts() {
    std::lock_guard<std::mutex> lock(mu_);
    return chunk_texts_;
  }
  std::vector<bool> chunks_relayed_as_received() {
    std::lock_guard<std::mutex> lock(mu_);
    return chunks_relayed_as_received_;
  }
  // The response body's text, and whether it was the upstream's text.
  std::string response_text() {
    std::lock_guard<std::mutex> lock(mu_);
    return response_text_;
  }
  bool response_relayed_as_received() {
    std::lock_guard<std::mutex> lock(mu_);
    return response_relayed_as_received_;
  }
  int dones() {
    std::lock_guard<std::mutex> lock(mu_);
    return dones_;
  }
  int responses() {
    std::lock_guard<std::mutex> lock(mu_);
    return responses_;
  }
  // How many OnChunks calls brought the chunks.
  int chunk_calls() {
    std::lock_guard<std::mutex> lock(mu_);
    return chunk_calls_;
  }
  bool done() { return dones() > 0; }
  std::set<std::thread::id> threads() {
    std::lock_guard<std::mutex> lock(mu_);
    return threads_;
  }
  // The streamed text: every choice-0 `delta.content` (chat) or `text` (completions), in order.
  std::string StreamedText() {
    std::lock_guard<std::mutex> lock(mu_);
    std::string text;
    for (const Json& chunk : chunks_) {
      if (!chunk.contains("choices")) continue;
      for (const Json& choice : chunk["choices"]) {
        if (choice.value("index", 0) != 0) continue;
        if (choice.contains("delta") && choice["delta"].contains("content") &&
            choice["delta"]["content"].is_string()) {
          text += choice["delta"]["content"].get<std::string>();
        }
        if (choice.contains("text") && choice["text"].is_string()) {
          text += choice["text"].get<std::string>();
        }
      }
    }
    return text;
  }
  // The `usage` of the usage chunk (`choices: []`), or null.
  Json StreamedUsage() {
    std::lock_guard<std::mutex> lock(mu_);
    for (const Json& chunk : chunks_) {
      if (chunk.contains("usage") && chunk["usage"].is_object() && chunk.contains("choices") &&
          chunk["choices"].empty()) {
        return chunk["usage"];
      }
    }
    return nullptr;
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  Json response_;
  std::string response_text_;
  bool response_relayed_as_received_ = false;
  std::vector<Json> chunks_;
  std::vector<std::string> chunk_texts_;
  std::vector<bool> chunks_relayed_as_received_;
  int responses_ = 0;
  int chunk_calls_ = 0;
  int dones_ = 0;
  absl::Status status_;
  std::set<std::thread::id> threads_;
};

}  // namespace terse::providers
