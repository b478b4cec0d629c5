// tool_json content: tool results built as JSON trees, so each field's spelling is known.
#include <algorithm>
#include <cctype>
#include <iterator>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "eval/task_words.h"

namespace terse::eval::internal {

// ---------------------------------------------------------------------------------------------
// tool_json: tool results built as JSON trees, so each field's spelling in the text is known.

namespace {

bool IsAlnum(char c) { return std::isalnum(static_cast<unsigned char>(c)) != 0; }

// A JSON value rendered by hand, so the text (and the answer's spelling in it) is exactly ours.
struct Json {
  enum class Type { kRaw, kString, kObject, kArray } type = Type::kRaw;
  std::string text;
  std::vector<std::pair<std::string, Json>> members;
  std::vector<Json> elements;
};

Json Raw(std::string s) { return {Json::Type::kRaw, std::move(s), {}, {}}; }
Json Str(std::string s) { return {Json::Type::kString, std::move(s), {}, {}}; }
Json Obj(std::vector<std::pair<std::string, Json>> m) {
  return {Json::Type::kObject, "", std::move(m), {}};
}
Json Arr(std::vector<Json> e) { return {Json::Type::kArray, "", {}, std::move(e)}; }

std::string Quote(std::string_view s) {
  std::string out = "\"";
  for (char c : s) {
    if (c == '"' || c == '\\') out += '\\';
    out += c;
  }
  return out + "\"";
}

bool Scalar(const Json& j) { return j.type == Json::Type::kRaw || j.type == Json::Type::kString; }

// Two-space indentation; objects of up to four scalars and arrays of scalars stay on one line.
void Render(const Json& j, size_t indent, std::string& out) {
  if (j.type == Json::Type::kRaw) {
    out += j.text;
    return;
  }
  if (j.type == Json::Type::kString) {
    out += Quote(j.text);
    return;
  }
  const bool object = j.type == Json::Type::kObject;
  const size_t size = object ? j.members.size() : j.elements.size();
  bool flat = size <= (object ? 4u : 8u);
  for (size_t i = 0; i < size && flat; ++i) {
    flat = Scalar(object ? j.members[i].second : j.elements[i]);
  }
  out += object ? "{" : "[";
  for (size_t i = 0; i < size; ++i) {
    out += i > 0 ? "," : "";
    if (!flat) out += "\n" + std::string(indent + 2, ' ');
    if (flat && i > 0) out += " ";
    if (object) out += Quote(j.members[i].first) + ": ";
    Render(object ? j.members[i].second : j.elements[i], indent + 2, out);
  }
  if (!flat && size > 0) out += "\n" + std::string(indent, ' ');
  out += object ? "}" : "]";
}

struct Tool {
  std::string name;
  Json result;
  std::vector<ToolAsk> asks;
};

// A value made by `make`, redrawn while it contains the reserved answer, then recorded.
template <typename F>
std::string FreshNumber(Writer& w, F make) {
  std::string s = make();
  for (int i = 0; i < 20 && w.Clashes(s); ++i) s = make();
  return w.Number(s);
}

std::string Money(Writer& w, int64_t lo_cents, int64_t hi_cents) {
  return FreshNumber(w, [&] { return internal::Fixed(w.rng().Range(lo_cents, hi_cents), 2); });
}

std::string Email(std::string_view person) {
  std::string s;
  for (char c : person) s += c == ' ' ? '.' : static_cast<char>(std::tolower(c));
  return s + "@example.com";
}

Tool OrderTool(Writer& w) {
  Rng& r = w.rng();
  const std::string id = w.Generate("id:A-DDDDD"), customer = w.Generate("person");
  const std::string carrier = w.Generate("org:carrier"), city = w.Generate("place");
  const int64_t year = r.Range(2024, 2026), month = r.Range(1, 12), day = r.Range(1, 21);
  const std::string placed =
      FreshNumber(w, [&] { return internal::IsoTime(year, month, day, r.Range(6 * 60, 23 * 60)); });
  const std::string eta =
      FreshNumber(w, [&] { return internal::IsoDate(year, month, day + r.Range(2, 7)); });
  std::vector<Json> lines;
  int64_t cents = 0;
  for (int64_t i = 0, k = r.Range(1, 3); i < k; ++i) {
    const int64_t qty = r.Range(1, 4), unit = r.Range(399, 18999);
    cents += qty * unit;
    lines.push_back(Obj({{"sku", Str(w.Generate("id:LLL-DDDD"))},
                         {"name", Str(w.Generate("w:item"))},
                         {"qty", Raw(w.Number(std::to_string(qty)))},
                         {"unit_price", Raw(w.Number(internal::Fixed(unit, 2)))}}));
  }
  const int64_t shipping = PickOf<int64_t>(r, {0, 495, 799, 1250});
  const std::string total = w.Number(internal::Fixed(cents + shipping, 2));
  Json result =
      Obj({{"order_id", Str(id)},
           {"status", Str(PickOf<std::string>(r, {"shipped", "processing", "in_transit"}))},
           {"placed_at", Str(placed)},
           {"customer", Obj({{"name", Str(customer)}, {"email", Str(Email(customer))}})},
           {"items", Arr(std::move(lines))},
           {"shipping", Obj({{"carrier", Str(carrier)},
                             {"method", Str(PickOf<std::string>(r, {"standard", "express"}))},
                             {"eta", Str(eta)},
                             {"address", Obj({{"city", Str(city)},
                                              {"postcode", Str(w.Generate("id:LLD DLL"))}})}})},
           {"total", Obj({{"amount", Raw(total)},
                          {"currency", Str(PickOf<std::string>(r, {"EUR", "USD", "GBP"}))},
                          {"shipping", Raw(w.Number(internal::Fixed(shipping, 2)))}})}});
  Vars v = {{"id", id}};
  return {"get_order",
          std::move(result),
          {{carrier, AnswerKind::kOrganisation,
            w.Expand("{Which delivery company is bringing|Who is the carrier for} order {id}?", v)},
           {eta, AnswerKind::kDate,
            w.Expand("{On what day should order {id} arrive|When is order {id} due to be "
                     "delivered}?",
                     v)},
           {total, AnswerKind::kAmount,
            w.Expand("{What did order {id} cost altogether|How much was charged in total for "
                     "order {id}}?",
                     v)},
           {customer, AnswerKind::kPerson,
            w.Expand("{Who placed order {id}|Whose purchase is order {id}}?", v)},
           {city, AnswerKind::kPlace,
            w.Expand("{Which town is order {id} being sent to|Where will order {id} be "
                     "delivered}?",
                     v)}}};
}

Tool WeatherTool(Writer& w) {
  Rng& r = w.rng();
  const std::string place = w.Generate("place");
  const std::string humidity = w.Generate("num:22:98");
  const int64_t year = r.Range(2024, 2026), month = r.Range(1, 12), day = r.Range(1, 22);
  std::vector<Json> days;
  std::vector<std::pair<std::string, std::string>> highs;  // date, high
  for (int64_t i = 0, k = r.Range(3, 5); i < k; ++i) {
    const std::string date = FreshNumber(w, [&] {
      return internal::IsoDate(year, static_cast<int>(month), static_cast<int>(day + i));
    });
    const int64_t low = r.Range(-80, 180);
    const std::string hi =
        FreshNumber(w, [&] { return internal::Fixed(low + r.Range(30, 140), 1); });
    highs.emplace_back(date, hi);
    days.push_back(Obj({{"date", Str(date)},
                        {"high_c", Raw(hi)},
                        {"low_c", Raw(w.Number(internal::Fixed(low, 1)))},
                        {"condition", Str(w.Generate("w:condition"))}}));
  }
  Json result = Obj({{"location", Obj({{"name", Str(place)},
                                       {"lat", Raw(w.Generate("dec:40:60:4"))},
                                       {"lon", Raw(w.Generate("dec:-10:20:4"))}})},
                     {"units", Str("metric")},
                     {"current", Obj({{"temp_c", Raw(w.Generate("dec:-5:31:1"))},
                                      {"condition", Str(w.Generate("w:condition"))},
                                      {"humidity_pct", Raw(humidity)},
                                      {"wind_kph", Raw(w.Generate("num:3:55"))}})},
                     {"forecast", Arr(std::move(days))}});
  const auto& [date, high] = highs[r.Below(highs.size())];
  Vars v = {{"place", place}, {"date", date}};
  return {"get_weather",
          std::move(result),
          {{high, AnswerKind::kNumber,
            w.Expand("{How warm is it expected to get|What top temperature is forecast} in "
                     "{place} on {date}?",
                     v)},
           {humidity, AnswerKind::kNumber,
            w.Expand("{What is the relative humidity in {place} right now|How humid is it in "
                     "{place} at the moment, in percent}?",
                     v)}}};
}

Tool FlightTool(Writer& w) {
  Rng& r = w.rng();
  const std::string flight = w.Generate("id:LLDDD"), airline = w.Generate("org:airline");
  const std::string from = w.Generate("place"), to = w.Generate("place");
  const std::string gate = w.Generate("id:LDD");
  auto code = [&] {
    std::string s;
    for (int i = 0; i < 3; ++i) s += static_cast<char>('A' + r.Below(26));
    return s;
  };
  const int64_t year = r.Range(2024, 2026), month = r.Range(1, 12), day = r.Range(1, 28);
  const int64_t minutes = r.Range(6 * 12, 20 * 12) * 5, delay = r.Range(0, 9) * 5 + 15;
  const std::string scheduled = w.Number(internal::IsoTime(year, month, day, minutes));
  const std::string estimated =
      FreshNumber(w, [&] { return internal::IsoTime(year, month, day, minutes + delay); });
  Json result = Obj({{"flight", Str(flight)},
                     {"airline", Str(airline)},
                     {"origin", Obj({{"iata", Str(code())}, {"city", Str(from)}})},
                     {"destination", Obj({{"iata", Str(code())}, {"city", Str(to)}})},
                     {"scheduled_departure", Str(scheduled)},
                     {"estimated_departure", Str(estimated)},
                     {"status", Str("delayed")},
                     {"delay_minutes", Raw(w.Number(std::to_string(delay)))},
                     {"gate", Str(gate)},
                     {"terminal", Raw(w.Generate("num:1:5"))}});
  Vars v = {{"f", flight}};
  return {
      "get_flight_status",
      std::move(result),
      {{gate, AnswerKind::kIdentifier,
        w.Expand("{From which gate does {f} board|Where at the airport do I board {f}, "
                 "which gate}?",
                 v)},
       {airline, AnswerKind::kOrganisation, w.Expand("{Which airline operates|Who flies} {f}?", v)},
       {estimated, AnswerKind::kDate,
        w.Expand("{When is {f} now expected to leave|What is the revised departure time of "
                 "{f}}?",
                 v)},
       {to, AnswerKind::kPlace, w.Expand("{Where is {f} heading|What city does {f} fly to}?", v)}}};
}

Tool BalanceTool(Writer& w) {
  Rng& r = w.rng();
  const std::string account = w.Generate("id:ACC-DDDDDDDD"), holder = w.Generate("person");
  const std::string available = Money(w, 1000, 900000);
  std::vector<Json> moves;
  std::vector<ToolAsk> asks;
  Vars v = {{"acc", account}};
  for (int64_t i = 0, k = r.Range(2, 5); i < k; ++i) {
    const std::string date = w.Generate("iso:2024:2026"), shop = w.Generate("org:company");
    const std::string amount = Money(w, -45000, -250);
    if (i == 0) {
      Vars tv = {{"amount", amount.substr(1)}, {"date", date}};
      asks.push_back({shop, AnswerKind::kOrganisation,
                      w.Expand("{Which business received the payment of|Who was paid} {amount} on "
                               "{date}?",
                               tv)});
    }
    moves.push_back(Obj({{"date", Str(date)},
                         {"merchant", Str(shop)},
                         {"amount", Raw(amount)},
                         {"category", Str(PickOf<std::string>(
                                          r, {"groceries", "travel", "utilities", "dining"}))}}));
  }
  Json result =
      Obj({{"account_id", Str(account)},
           {"holder", Str(holder)},
           {"currency", Str(PickOf<std::string>(r, {"EUR", "USD", "GBP"}))},
           {"balance", Obj({{"available", Raw(available)}, {"pending", Raw(Money(w, 0, 90000))}})},
           {"recent_transactions", Arr(std::move(moves))}});
  asks.push_back({available, AnswerKind::kAmount,
                  w.Expand("{How much money can be spent from account {acc} right now|What is "
                           "the available balance on {acc}}?",
                           v)});
  asks.push_back(
      {holder, AnswerKind::kPerson, w.Expand("{Who holds|Whose name is on} account {acc}?", v)});
  return {"get_account_balance", std::move(result), std::move(asks)};
}

Tool SearchTool(Writer& w) {
  Rng& r = w.rng();
  const std::string topic = w.Generate("w:doc_topic");
  std::vector<Json> hits;
  std::vector<ToolAsk> asks;
  for (int64_t i = 0, k = r.Range(2, 4); i < k; ++i) {
    std::string title;
    for (int tries = 0; tries < 20; ++tries) {
      title = w.Expand("{Guide to|Policy on|FAQ:|How we handle|Checklist:} {#w:doc_topic}");
      if (w.Claim(title)) break;
    }
    std::string slug;
    for (char c : title) {
      if (IsAlnum(c)) slug += static_cast<char>(std::tolower(c));
      if (c == ' ' && !slug.empty() && slug.back() != '-') slug += '-';
    }
    const std::string url = "https://intranet.example.com/docs/" + slug;
    const std::string author = w.Generate("person"), updated = w.Generate("iso:2019:2025");
    Vars tv = {{"t", title}};
    asks.push_back({author, AnswerKind::kPerson,
                    w.Expand("{Who wrote|Who is the author of} the page titled \"{t}\"?", tv)});
    asks.push_back({updated, AnswerKind::kDate,
                    w.Expand("{When was|On what date was} \"{t}\" last {updated|revised}?", tv)});
    asks.push_back(
        {url, AnswerKind::kIdentifier,
         w.Expand("{What is the link to|Where can I find} the page called \"{t}\"?", tv)});
    hits.push_back(Obj(
        {{"title", Str(title)},
         {"url", Str(url)},
         {"author", Str(author)},
         {"updated", Str(updated)},
         {"score", Raw(w.Number(internal::Fixed(r.Range(40, 99), 2)))},
         {"snippet",
          Str(w.Expand("{This page explains how {t} works for staff in all offices.|Updated "
                       "guidance; requests over {#cash:100:2000} now need a second approval.|A "
                       "short checklist, reviewed every {#small:3:12} months.|Covers contractors "
                       "and employees alike; see the appendix for the form.|Most questions are "
                       "answered within {#small:2:5} working days.}",
                       tv))}}));
  }
  Json result = Obj({{"query", Str(topic)},
                     {"total_hits", Raw(w.Generate("num:12:480"))},
                     {"hits", Arr(std::move(hits))}});
  return {"search_docs", std::move(result), std::move(asks)};
}

Tool EmployeeTool(Writer& w) {
  Rng& r = w.rng();
  const std::string name = w.Generate("person"), manager = w.Generate("person");
  const std::string office = w.Generate("place"), start = w.Generate("iso:2008:2024");
  const std::string id = w.Generate("id:E-DDDDD"), ext = w.Generate("num:2000:7999");
  Json result = Obj({{"employee_id", Str(id)},
                     {"name", Str(name)},
                     {"email", Str(Email(name))},
                     {"title", Str(w.Generate("w:job_title"))},
                     {"department", Str(w.Generate("w:department"))},
                     {"office", Str(office)},
                     {"manager", Str(manager)},
                     {"start_date", Str(start)},
                     {"phone_extension", Raw(ext)},
                     {"remote_days", Raw(w.Number(std::to_string(r.Range(0, 3))))}});
  Vars v = {{"n", name}};
  return {
      "lookup_employee",
      std::move(result),
      {{manager, AnswerKind::kPerson,
        w.Expand("{Who does {n} report to|Who is {n}'s line manager}?", v)},
       {office, AnswerKind::kPlace,
        w.Expand("{In which office is {n} based|Where does {n} work from}?", v)},
       {start, AnswerKind::kDate,
        w.Expand("{When did {n} join the company|What was {n}'s first day}?", v)},
       {ext, AnswerKind::kNumber,
        w.Expand("{What is {n}'s phone extension|Which extension reaches {n}}?", v)},
       {id, AnswerKind::kIdentifier, w.Expand("What is {n}'s {employee number|staff ID}?", v)}}};
}

Tool ShipmentTool(Writer& w) {
  Rng& r = w.rng();
  const std::string tracking = w.Generate("id:LLDDDDDDDDDLL"), carrier = w.Generate("org:carrier");
  const std::string weight = w.Generate("dec:0:30:1");
  const int64_t year = r.Range(2024, 2026), month = r.Range(1, 12), day = r.Range(1, 24);
  int64_t minutes = r.Range(6 * 60, 12 * 60);
  std::vector<Json> events;
  std::string latest;
  static constexpr const char* kSteps[] = {"Picked up", "Departed facility",
                                           "Arrived at sorting centre", "Customs cleared",
                                           "Out for delivery"};
  const int64_t k = r.Range(2, 5);
  for (int64_t i = 0; i < k; ++i) {
    minutes += r.Range(90, 900);
    const std::string place = w.Generate("place");
    latest = place;
    events.push_back(Obj({{"time", Str(FreshNumber(w,
                                                   [&] {
                                                     return internal::IsoTime(year, month,
                                                                              day + minutes / 1440,
                                                                              minutes % 1440);
                                                   }))},
                          {"location", Str(place)},
                          {"status", Str(kSteps[i])}}));
  }
  std::reverse(events.begin(), events.end());  // newest first, as tracking APIs list them
  Json result = Obj({{"tracking_number", Str(tracking)},
                     {"carrier", Str(carrier)},
                     {"weight_kg", Raw(weight)},
                     {"events", Arr(std::move(events))}});
  Vars v = {{"t", tracking}};
  return {"track_shipment",
          std::move(result),
          {{latest, AnswerKind::kPlace,
            w.Expand("{Where was parcel {t} most recently scanned|What is the last known location "
                     "of parcel {t}}?",
                     v)},
           {carrier, AnswerKind::kOrganisation,
            w.Expand("{Which company is transporting|Who is delivering} parcel {t}?", v)},
           {weight, AnswerKind::kNumber, w.Expand("How heavy is parcel {t}, in kilograms?", v)}}};
}

using ToolFn = Tool (*)(Writer&);
constexpr ToolFn kTools[] = {OrderTool,  WeatherTool,  FlightTool,  BalanceTool,
                             SearchTool, EmployeeTool, ShipmentTool};

}  // namespace

ToolResult MakeToolResult(Writer& w) {
  Tool tool = kTools[w.rng().Below(std::size(kTools))](w);
  std::string text;
  Render(tool.result, 0, text);
  return {tool.name, std::move(text), std::move(tool.asks)};
}

}  // namespace terse::eval::internal
