// Runs methods over generated items on a few threads, then aggregates per cell.
#include "eval/runner.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <map>
#include <mutex>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "base/status_macros.h"

namespace terse::eval {
namespace {

using compressor::TargetTokenizer;

bool IsNumericKind(AnswerKind k) {
  return k == AnswerKind::kNumber || k == AnswerKind::kDate || k == AnswerKind::kAmount;
}
bool IsNameKind(AnswerKind k) {
  return k == AnswerKind::kPerson || k == AnswerKind::kOrganisation || k == AnswerKind::kPlace;
}

uint64_t Mix(uint64_t x) {  // splitmix64's finaliser
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

uint64_t HashText(std::string_view s) {
  uint64_t h = 0xcbf29ce484222325ULL;
  for (unsigned char c : s) h = (h ^ c) * 0x100000001b3ULL;
  return h;
}

std::string JoinParts(std::string_view instruction, std::string_view context,
                      std::string_view question) {
  std::string out;
  for (std::string_view p : {instruction, context, question}) {
    if (p.empty()) continue;
    if (!out.empty()) out += "\n\n";
    out += p;
  }
  return out;
}

// The baselines' shared frame: the context's target-token ids and how many of them fit.
struct ContextBudget {
  std::vector<uint32_t> ids;
  size_t keep = 0;
};

ContextBudget BudgetFor(const Item& item, double rate, const TargetTokenizer& tokenizer) {
  ContextBudget b;
  b.ids = tokenizer.Encode(absl::StrJoin(item.context, "\n\n"));
  const double total = static_cast<double>(tokenizer.Count(OriginalPrompt(item)));
  const double fixed =
      static_cast<double>(tokenizer.Count(JoinParts(item.instruction, "", item.question)));
  const double room = std::max(0.0, std::round(rate * total) - fixed);
  b.keep = std::min(b.ids.size(), static_cast<size_t>(room));
  return b;
}

std::string MessagesText(const Json& messages) {
  std::vector<std::string> parts;
  for (const Json& m : messages) {
    const Json& content = m.value("content", Json());
    if (content.is_string()) {
      parts.push_back(content.get<std::string>());
    } else if (content.is_array()) {
      for (const Json& part : content) {
        if (part.is_object() && part.value("type", "") == "text") {
          parts.push_back(part.value("text", ""));
        }
      }
    }
  }
  return absl::StrJoin(parts, "\n\n");
}

}  // namespace

std::string_view FaceName(Face face) { return face == Face::kPrompt ? "prompt" : "chat"; }

absl::StatusOr<Face> ParseFace(std::string_view name) {
  if (name == "prompt") return Face::kPrompt;
  if (name == "chat") return Face::kChat;
  return absl::InvalidArgumentError("unknown face \"" + std::string(name) + "\" (prompt | chat)");
}

Json ItemMessages(const Item& item) {
  Json messages = Json::array();
  if (!item.instruction.empty()) {
    messages.push_back({{"role", "system"}, {"content", item.instruction}});
  }
  if (item.family == Family::kChat) {
    for (const std::string& turn : item.context) {
      constexpr std::string_view kUser = "User: ", kAssistant = "Assistant: ";
      if (turn.starts_with(kAssistant)) {
        messages.push_back({{"role", "assistant"}, {"content", turn.substr(kAssistant.size())}});
      } else {
        const size_t skip = turn.starts_with(kUser) ? kUser.size() : 0;
        messages.push_back({{"role", "user"}, {"content", turn.substr(skip)}});
      }
    }
    messages.push_back({{"role", "user"}, {"content", item.question}});
    return messages;
  }
  messages.push_back(
      {{"role", "user"},
       {"content", JoinParts("", absl::StrJoin(item.context, "\n\n"), item.question)}});
  return messages;
}

Json ItemJson(const Item& item) {
  return {{"id", item.id},
          {"family", std::string(FamilyName(item.family))},
          {"instruction", item.instruction},
          {"context", item.context},
          {"question", item.question},
          {"answer", item.answer},
          {"answer_kind", std::string(AnswerKindName(item.answer_kind))},
          {"answer_item", item.answer_item},
          {"expected_reply", item.expected_reply},
          {"demo_answers", item.demo_answers},
          {"numbers", item.numbers},
          {"entities", item.entities}};
}

Method TerseMethod(std::shared_ptr<compressor::Compressor> compressor,
                   compressor::ChatPolicy policy, Face face) {
  policy.min_prompt_tokens = 0;
  policy.rate_bands.clear();
  policy.options.min_tokens = 0;
  policy.options.target_tokens.reset();
  return [compressor, policy, face](const Item& item,
                                    double rate) -> absl::StatusOr<CompressedPrompt> {
    compressor::ChatPolicy p = policy;
    p.options.rate = rate;
    CompressedPrompt out;
    if (face == Face::kChat) {
      Json messages = ItemMessages(item);
      RETURN_IF_ERROR(compressor::CompressChat(*compressor, messages, p).status());
      out.prompt = MessagesText(messages);
      return out;
    }
    compressor::CompressOptions options = p.options;
    if (p.question_aware) options.rank = compressor::RankMethod::kQuestion;
    ASSIGN_OR_RETURN(
        compressor::CompressResult r,
        compressor->Compress({item.instruction, item.context, item.question}, options));
    out.prompt = r.prompt;
    out.items.assign(item.context.size(), "");
    for (const compressor::CompressResult::Item& c : r.context) {
      if (c.original_index < out.items.size()) out.items[c.original_index] = c.text;
    }
    return out;
  };
}

Method TruncateMethod(std::shared_ptr<const TargetTokenizer> tokenizer) {
  return [tokenizer](const Item& item, double rate) -> absl::StatusOr<CompressedPrompt> {
    ContextBudget b = BudgetFor(item, rate, *tokenizer);
    b.ids.resize(b.keep);
    return CompressedPrompt{JoinParts(item.instruction, tokenizer->Decode(b.ids), item.question),
                            {}};
  };
}

Method RandomDropMethod(std::shared_ptr<const TargetTokenizer> tokenizer, uint64_t seed) {
  return [tokenizer, seed](const Item& item, double rate) -> absl::StatusOr<CompressedPrompt> {
    ContextBudget b = BudgetFor(item, rate, *tokenizer);
    // A partial Fisher-Yates shuffle of the positions picks `keep` of them; kept in order.
    std::vector<size_t> order(b.ids.size());
    for (size_t i = 0; i < order.size(); ++i) order[i] = i;
    uint64_t state = Mix(seed ^ HashText(item.id) ^ static_cast<uint64_t>(rate * 1e6));
    for (size_t i = 0; i < b.keep; ++i) {
      state = Mix(state);
      std::swap(order[i], order[i + state % (order.size() - i)]);
    }
    order.resize(b.keep);
    std::sort(order.begin(), order.end());
    std::vector<uint32_t> kept;
    kept.reserve(order.size());
    for (size_t i : order) kept.push_back(b.ids[i]);
    return CompressedPrompt{JoinParts(item.instruction, tokenizer->Decode(kept), item.question),
                            {}};
  };
}

namespace {

struct Outcome {
  size_t method = 0, family = 0, rate = 0;
  const Item* item = nullptr;
  absl::Status status;
  ItemScore score;
  double ms = 0;
  std::optional<CompressedPrompt> output;  // kept with RunOptions::keep_outputs
};

void DrawProgress(size_t done, size_t total, double seconds) {
  constexpr int kWidth = 30;
  const int filled = total ? static_cast<int>(kWidth * done / total) : kWidth;
  std::string bar(filled, '#');
  bar.resize(kWidth, '.');
  const double eta = done ? seconds * (total - done) / done : 0;
  std::fprintf(stderr, "\r[%s] %zu/%zu compressions, %.0f s, ETA %.0f s ", bar.c_str(), done, total,
               seconds, eta);
  std::fflush(stderr);
}

double Share(size_t kept, size_t total) {
  return total ? static_cast<double>(kept) / static_cast<double>(total) : -1;
}

Row Aggregate(const std::vector<const Outcome*>& cell, const NamedMethod& method, Family family,
              double rate) {
  Row row{.method = method.name,
          .face = method.face,
          .family = std::string(FamilyName(family)),
          .rate = rate};
  size_t original = 0, compressed = 0, answers = 0, answers_kept = 0, numeric = 0, numeric_kept = 0,
         names = 0, names_kept = 0, questions = 0, demos = 0, demos_kept = 0, numbers = 0,
         numbers_kept = 0, entities = 0, entities_kept = 0, replies = 0, replies_correct = 0;
  double ms = 0;
  for (const Outcome* o : cell) {
    if (!o->status.ok()) {
      if (row.errors++ == 0) row.first_error = o->status.ToString();
      continue;
    }
    const ItemScore& s = o->score;
    ++row.items;
    ms += o->ms;
    original += s.original_tokens;
    compressed += s.compressed_tokens;
    if (s.original_tokens > 0) {
      const double achieved = static_cast<double>(s.compressed_tokens) / s.original_tokens;
      row.worst_rate_error = std::max(row.worst_rate_error, std::abs(achieved / rate - 1));
    }
    if (s.has_answer) {
      ++answers;
      answers_kept += s.answer_kept;
      if (IsNumericKind(o->item->answer_kind)) numeric += 1, numeric_kept += s.answer_kept;
      if (IsNameKind(o->item->answer_kind)) names += 1, names_kept += s.answer_kept;
    }
    questions += s.question_intact;
    replies += s.has_reply, replies_correct += s.reply_correct;
    demos += s.demo_answers, demos_kept += s.demo_answers_kept;
    numbers += s.numbers, numbers_kept += s.numbers_kept;
    entities += s.entities, entities_kept += s.entities_kept;
  }
  row.achieved_rate = original ? static_cast<double>(compressed) / original : 0;
  row.answer_kept = Share(answers_kept, answers);
  row.numeric_answer_kept = Share(numeric_kept, numeric);
  row.name_answer_kept = Share(names_kept, names);
  row.question_intact = row.items ? static_cast<double>(questions) / row.items : 0;
  row.demo_answers_kept = Share(demos_kept, demos);
  row.numbers_kept = Share(numbers_kept, numbers);
  row.entities_kept = Share(entities_kept, entities);
  row.reply_exact_match = Share(replies_correct, replies);
  row.ms_per_item = row.items ? ms / row.items : 0;
  return row;
}

}  // namespace

absl::StatusOr<RunResult> Evaluate(const RunOptions& options,
                                   const std::vector<NamedMethod>& methods) {
  if (options.families.empty() || options.rates.empty() || methods.empty()) {
    return absl::InvalidArgumentError("nothing to run: no family, rate or method");
  }
  for (double r : options.rates) {
    if (!(r > 0 && r <= 1))
      return absl::InvalidArgumentError(absl::StrCat("rate ", r, " is not in (0, 1]"));
  }
  std::vector<std::vector<Item>> items;
  for (Family f : options.families) {
    items.push_back(Generate(f, options.items_per_family, options.seed));
  }
  std::vector<Outcome> work;
  for (size_t m = 0; m < methods.size(); ++m) {
    for (size_t f = 0; f < items.size(); ++f) {
      const size_t rates = methods[m].uncompressed ? 1 : options.rates.size();
      for (size_t r = 0; r < rates; ++r) {
        for (const Item& item : items[f]) work.push_back({m, f, r, &item, {}, {}, 0, {}});
      }
    }
  }
  ASSIGN_OR_RETURN(std::shared_ptr<const TargetTokenizer> tokenizer,
                   compressor::GetTargetTokenizer("cl100k_base"));

  std::atomic<size_t> next{0}, done{0};
  const auto worker = [&] {
    for (size_t i = next++; i < work.size(); i = next++) {
      Outcome& o = work[i];
      const auto start = std::chrono::steady_clock::now();
      absl::StatusOr<CompressedPrompt> c = methods[o.method].method(*o.item, options.rates[o.rate]);
      o.ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start)
                 .count();
      if (c.ok()) {
        o.score = ScoreItem(*o.item, *c, *tokenizer);
        if (options.keep_outputs) o.output = *std::move(c);
      } else {
        o.status = c.status();
      }
      ++done;
    }
  };
  const auto start = std::chrono::steady_clock::now();
  std::vector<std::thread> threads;
  for (int t = 0; t < std::max(1, options.threads); ++t) threads.emplace_back(worker);
  if (options.progress) {
    while (done < work.size()) {
      DrawProgress(done, work.size(),
                   std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
      std::this_thread::sleep_for(std::chrono::milliseconds(250));
    }
  }
  for (std::thread& t : threads) t.join();
  if (options.progress) {
    DrawProgress(done, work.size(),
                 std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
    std::fputc('\n', stderr);
  }

  std::map<std::tuple<size_t, size_t, size_t>, std::vector<const Outcome*>> cells;
  for (const Outcome& o : work) cells[{o.method, o.family, o.rate}].push_back(&o);
  RunResult result;
  for (const Outcome& o : work) {
    if (!o.output.has_value()) continue;
    const NamedMethod& m = methods[o.method];
    Json line = {{"method", m.name},
                 {"face", m.face},
                 {"family", std::string(FamilyName(o.item->family))},
                 {"rate", m.uncompressed ? 1.0 : options.rates[o.rate]},
                 {"id", o.item->id}};
    if (o.output->reply.has_value()) {
      line["reply"] = *o.output->reply;
    } else {
      line["prompt"] = o.output->prompt;
    }
    result.outputs.push_back(std::move(line));
  }
  for (const auto& [key, cell] : cells) {
    const auto& [m, f, r] = key;
    result.rows.push_back(Aggregate(cell, methods[m], options.families[f],
                                    methods[m].uncompressed ? 1.0 : options.rates[r]));
  }
  Json families = Json::array();
  for (Family f : options.families) families.push_back(FamilyName(f));
  Json method_names = Json::array();
  for (const NamedMethod& m : methods) method_names.push_back(m.name + "/" + m.face);
  result.config = {{"families", families},    {"items_per_family", options.items_per_family},
                   {"seed", options.seed},    {"rates", options.rates},
                   {"methods", method_names}, {"target_tokenizer", "cl100k_base"}};
  return result;
}

namespace {

std::string Cell(double share) {
  return share < 0 ? std::string("    -") : absl::StrFormat("%5.2f", share);
}

}  // namespace

std::string FormatTable(const RunResult& result) {
  std::string out;
  std::string block;
  for (const Row& r : result.rows) {
    const std::string key = r.method + " (" + r.face + ")";
    if (key != block) {
      block = key;
      absl::StrAppend(&out, out.empty() ? "" : "\n", key, "\n",
                      "family        rate  achieved  worst   answer  numeric  name  question  "
                      "demos  numbers  names  reply     ms\n");
    }
    absl::StrAppendFormat(
        &out, "%-12s  %4.2f  %8.3f  %5.1f%%   %s    %s  %s     %s  %s    %s  %s  %s  %5.0f",
        r.family, r.rate, r.achieved_rate, 100 * r.worst_rate_error, Cell(r.answer_kept),
        Cell(r.numeric_answer_kept), Cell(r.name_answer_kept), Cell(r.question_intact),
        Cell(r.demo_answers_kept), Cell(r.numbers_kept), Cell(r.entities_kept),
        Cell(r.reply_exact_match), r.ms_per_item);
    if (r.errors > 0) absl::StrAppend(&out, "  (", r.errors, " failed: ", r.first_error, ")");
    out += "\n";
  }
  return out;
}

Json ResultJson(const RunResult& result) {
  Json rows = Json::array();
  const auto share = [](double v) { return v < 0 ? Json() : Json(v); };
  for (const Row& r : result.rows) {
    rows.push_back({{"method", r.method},
                    {"face", r.face},
                    {"family", r.family},
                    {"rate", r.rate},
                    {"items", r.items},
                    {"achieved_rate", r.achieved_rate},
                    {"worst_rate_error", r.worst_rate_error},
                    {"answer_kept", share(r.answer_kept)},
                    {"numeric_answer_kept", share(r.numeric_answer_kept)},
                    {"name_answer_kept", share(r.name_answer_kept)},
                    {"question_intact", r.question_intact},
                    {"demo_answers_kept", share(r.demo_answers_kept)},
                    {"numbers_kept", share(r.numbers_kept)},
                    {"entities_kept", share(r.entities_kept)},
                    {"reply_exact_match", share(r.reply_exact_match)},
                    {"ms_per_item", r.ms_per_item},
                    {"errors", r.errors}});
  }
  return {{"config", result.config}, {"rows", rows}};
}

std::string RetentionSvg(const RunResult& result) {
  // Panels in a grid of four; x is the rate (0 to 0.55), y the retention (0 to 1).
  std::vector<std::string> families, lines;
  for (const Row& r : result.rows) {
    if (std::find(families.begin(), families.end(), r.family) == families.end())
      families.push_back(r.family);
    const std::string line = r.method + " (" + r.face + ")";
    if (std::find(lines.begin(), lines.end(), line) == lines.end()) lines.push_back(line);
  }
  constexpr int kPanelW = 230, kPanelH = 170, kLeft = 36, kTop = 24, kPlotW = 180, kPlotH = 110;
  constexpr const char* kColors[] = {"#1f77b4", "#d62728", "#7f7f7f", "#2ca02c",
                                     "#9467bd", "#ff7f0e", "#8c564b", "#e377c2"};
  const int columns = 4;
  const int rows = static_cast<int>((families.size() + columns - 1) / columns);
  const int legend_h = 18 * static_cast<int>(lines.size()) + 10;
  std::string svg = absl::StrFormat(
      "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" "
      "font-family=\"sans-serif\" font-size=\"11\">\n<rect width=\"100%%\" height=\"100%%\" "
      "fill=\"white\"/>\n",
      columns * kPanelW, rows * kPanelH + legend_h);
  const auto x_of = [](double rate) { return kLeft + rate / 0.55 * kPlotW; };
  const auto y_of = [](double share) { return kTop + (1 - share) * kPlotH; };
  for (size_t p = 0; p < families.size(); ++p) {
    const int ox = static_cast<int>(p % columns) * kPanelW,
              oy = static_cast<int>(p / columns) * kPanelH;
    const bool fewshot = families[p] == "fewshot_math";
    absl::StrAppendFormat(&svg, "<g transform=\"translate(%d,%d)\">\n", ox, oy);
    absl::StrAppendFormat(&svg, "<text x=\"%d\" y=\"14\" font-weight=\"bold\">%s: %s kept</text>\n",
                          kLeft, families[p], fewshot ? "demo answers" : "answer");
    absl::StrAppendFormat(&svg,
                          "<rect x=\"%d\" y=\"%d\" width=\"%d\" height=\"%d\" fill=\"none\" "
                          "stroke=\"#bbb\"/>\n",
                          kLeft, kTop, kPlotW, kPlotH);
    for (double tick : {0.0, 0.5, 1.0}) {
      absl::StrAppendFormat(&svg, "<text x=\"%d\" y=\"%.1f\" text-anchor=\"end\">%.1f</text>\n",
                            kLeft - 4, y_of(tick) + 4, tick);
    }
    for (double tick : {0.1, 0.2, 0.33, 0.5}) {
      absl::StrAppendFormat(&svg, "<text x=\"%.1f\" y=\"%d\" text-anchor=\"middle\">%g</text>\n",
                            x_of(tick), kTop + kPlotH + 14, tick);
    }
    absl::StrAppendFormat(&svg, "<text x=\"%d\" y=\"%d\" text-anchor=\"middle\">rate</text>\n",
                          kLeft + kPlotW / 2, kTop + kPlotH + 28);
    for (size_t l = 0; l < lines.size(); ++l) {
      std::vector<std::pair<double, double>> points;
      for (const Row& r : result.rows) {
        if (r.family != families[p] || r.method + " (" + r.face + ")" != lines[l]) continue;
        const double v = fewshot ? r.demo_answers_kept : r.answer_kept;
        if (v >= 0) points.emplace_back(r.rate, v);
      }
      std::sort(points.begin(), points.end());
      std::string path;
      for (const auto& [x, y] : points)
        absl::StrAppendFormat(&path, "%.1f,%.1f ", x_of(x), y_of(y));
      const char* color = kColors[l % std::size(kColors)];
      absl::StrAppendFormat(&svg,
                            "<polyline points=\"%s\" fill=\"none\" stroke=\"%s\" "
                            "stroke-width=\"2\"/>\n",
                            path, color);
      for (const auto& [x, y] : points) {
        absl::StrAppendFormat(&svg, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"2.5\" fill=\"%s\"/>\n",
                              x_of(x), y_of(y), color);
      }
    }
    svg += "</g>\n";
  }
  for (size_t l = 0; l < lines.size(); ++l) {
    const int y = rows * kPanelH + 14 + 18 * static_cast<int>(l);
    absl::StrAppendFormat(&svg,
                          "<line x1=\"%d\" y1=\"%d\" x2=\"%d\" y2=\"%d\" stroke=\"%s\" "
                          "stroke-width=\"2\"/><text x=\"%d\" y=\"%d\">%s</text>\n",
                          kLeft, y - 4, kLeft + 24, y - 4, kColors[l % std::size(kColors)],
                          kLeft + 30, y, lines[l]);
  }
  svg += "</svg>\n";
  return svg;
}

}  // namespace terse::eval
