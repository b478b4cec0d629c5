// Shared by the task generators: the portable PRNG, number formatting, word pools, the writer.
#include "eval/task_words.h"

#include <algorithm>
#include <cctype>
#include <map>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"

namespace terse::eval::internal {

uint64_t HashMix(uint64_t a, uint64_t b) {
  uint64_t z = a ^ (b + 0x9e3779b97f4a7c15ULL + (a << 6) + (a >> 2));
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

Rng::Rng(uint64_t seed) {
  for (uint64_t& s : s_) {
    seed += 0x9e3779b97f4a7c15ULL;
    uint64_t z = seed;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    s = z ^ (z >> 31);
  }
}

uint64_t Rng::Next() {
  auto rotl = [](uint64_t x, int k) { return (x << k) | (x >> (64 - k)); };
  const uint64_t result = rotl(s_[1] * 5, 7) * 9;
  const uint64_t t = s_[1] << 17;
  s_[2] ^= s_[0];
  s_[3] ^= s_[1];
  s_[1] ^= s_[2];
  s_[0] ^= s_[3];
  s_[2] ^= t;
  s_[3] = rotl(s_[3], 45);
  return result;
}

uint64_t Rng::Below(uint64_t n) {
  if (n <= 1) return 0;
  const uint64_t threshold = (0 - n) % n;  // 2^64 mod n: the biased low values to reject
  while (true) {
    const uint64_t x = Next();
    if (x >= threshold) return x % n;
  }
}

int64_t Rng::Range(int64_t lo, int64_t hi) {
  if (hi <= lo) return lo;
  return lo + static_cast<int64_t>(Below(static_cast<uint64_t>(hi - lo) + 1));
}

std::string Commas(int64_t n) {
  std::string digits = std::to_string(n < 0 ? -n : n);
  std::string out;
  for (size_t i = 0; i < digits.size(); ++i) {
    if (i > 0 && (digits.size() - i) % 3 == 0) out += ',';
    out += digits[i];
  }
  return n < 0 ? "-" + out : out;
}

std::string Pad(int64_t v, int width) {
  std::string s = std::to_string(v);
  if (s.size() < static_cast<size_t>(width)) s.insert(0, width - s.size(), '0');
  return s;
}

std::string Fixed(int64_t scaled, int places) {
  if (places <= 0) return std::to_string(scaled);
  int64_t p = 1;
  for (int i = 0; i < places; ++i) p *= 10;
  const int64_t a = scaled < 0 ? -scaled : scaled;
  return absl::StrCat(scaled < 0 ? "-" : "", a / p, ".", Pad(a % p, places));
}

std::string IsoDate(int64_t year, int month, int day) {
  return absl::StrCat(year, "-", Pad(month, 2), "-", Pad(day, 2));
}

std::string IsoTime(int64_t year, int month, int day, int64_t minutes) {
  return absl::StrCat(IsoDate(year, month, day), "T", Pad(minutes / 60, 2), ":",
                      Pad(minutes % 60, 2), ":00Z");
}

std::string NumberWord(int n) {
  static constexpr const char* kWords[] = {"zero", "one",    "two",   "three", "four",
                                           "five", "six",    "seven", "eight", "nine",
                                           "ten",  "eleven", "twelve"};
  return n >= 0 && n <= 12 ? kWords[n] : std::to_string(n);
}

size_t WordCount(std::string_view text) {
  size_t n = 0;
  bool in_word = false;
  for (char c : text) {
    const bool space = std::isspace(static_cast<unsigned char>(c)) != 0;
    if (!space && !in_word) ++n;
    in_word = !space;
  }
  return n;
}

// ---------------------------------------------------------------------------------------------
// Word pools.

const Strings& Pool(std::string_view name) {
  static const auto* pools = new std::map<std::string_view, Strings, std::less<>>{
      {"first", {"Idris",   "Priya",   "Tomas",    "Mei",       "Amara",   "Lucia",   "Oskar",
                 "Nadia",   "Kofi",    "Elena",    "Rafael",    "Ingrid",  "Yusuf",   "Hana",
                 "Mateo",   "Saoirse", "Dmitri",   "Aisha",     "Jonas",   "Leila",   "Arjun",
                 "Freya",   "Kenji",   "Zainab",   "Marcus",    "Ines",    "Tariq",   "Greta",
                 "Emeka",   "Sofia",   "Anders",   "Yara",      "Callum",  "Rosa",    "Malik",
                 "Astrid",  "Rohan",   "Noor",     "Felix",     "Chiara",  "Bastian", "Amina",
                 "Desmond", "Lina",    "Viktor",   "Wanjiru",   "Hugo",    "Esme",    "Rashid",
                 "Signe",   "Pablo",   "Thandiwe", "Mirela",    "Caleb",   "Dariusz", "Imogen",
                 "Lorenzo", "Maeve",   "Nikolai",  "Olamide",   "Paloma",  "Quentin", "Ruth",
                 "Soren",   "Tamsin",  "Ugo",      "Valentina", "Wendell", "Ximena",  "Yosef",
                 "Zofia",   "Beatrix", "Cyrus",    "Dalia",     "Eamon",   "Fatima",  "Gideon",
                 "Halima",  "Ivo",     "Juniper",  "Kasimir",   "Lorna",   "Nell",    "Orla",
                 "Piotr",   "Rania",   "Stellan",  "Teodora",   "Vesna",   "Yannick", "Zubair",
                 "Agnes",   "Bernard", "Clemence", "Dev",       "Elif",    "Farid",   "Gwen",
                 "Hector",  "Isolde",  "Jorge",    "Keziah",    "Leon",    "Marisol"}},
      {"surname",
       {"Bramwell",  "Raman",       "Eriksen",    "Okafor",     "Lindqvist", "Castellanos",
        "Whitlock",  "Kowalczyk",   "Halvorsen",  "Nakamura",   "Adeyemi",   "Fairbairn",
        "Moreau",    "Petrov",      "Achterberg", "Quayle",     "Delacroix", "Ndlovu",
        "Varga",     "Oyelaran",    "Thorne",     "Kessler",    "Marchetti", "Abernathy",
        "Szabo",     "Rahman",      "Lindgren",   "Okonkwo",    "Haverford", "Yilmaz",
        "Dufresne",  "Pemberton",   "Kaur",       "Novak",      "Ashdown",   "Brennan",
        "Calloway",  "Drummond",    "Espinoza",   "Fenwick",    "Galloway",  "Hargreaves",
        "Ibarra",    "Jankowski",   "Kettering",  "Lachance",   "Mwangi",    "Nyberg",
        "Orsini",    "Pellegrini",  "Quintero",   "Rasmussen",  "Sandoval",  "Tanaka",
        "Underhill", "Vasquez",     "Wexford",    "Yamamoto",   "Zielinski", "Arkwright",
        "Beaumont",  "Cardenas",    "Danjuma",    "Ellery",     "Forsyth",   "Gallagher",
        "Holmberg",  "Iqbal",       "Jovanovic",  "Kearney",    "Lemaire",   "Morcombe",
        "Nakashima", "Ostrowski",   "Prescott",   "Rydell",     "Sorensen",  "Tremblay",
        "Ulloa",     "Vandermeer",  "Winslow",    "Ashworth",   "Blackwood", "Chaudhry",
        "Dunmore",   "Falconer",    "Greaves",    "Hollis",     "Ingram",    "Jessop",
        "Kilbride",  "Merriman",    "Northcott",  "Penhaligon", "Radcliffe", "Stanmore",
        "Treharne",  "Vickery",     "Yardley",    "Boateng",    "Cheung",    "Dlamini",
        "Estrada",   "Fonseca",     "Gutierrez",  "Huang",      "Ivanova",   "Jensen",
        "Khatri",    "Laine",       "Mensah",     "Nguyen",     "Oduya",     "Patel",
        "Rossi",     "Takahashi",   "Urquhart",   "Volkov",     "Wojcik",    "Zapata",
        "Achebe",    "Brightwater", "Coutinho",   "Dervish",    "Engstrom",  "Farrow"}},
      {"root",
       {"Elsinore",   "Varrow",     "Keld",         "Ashcombe",   "Brennock",   "Carrowmere",
        "Dunmarrow",  "Ellesby",    "Fennick",      "Garrowby",   "Halden",     "Isterby",
        "Lannick",    "Marrowdale", "Nethercott",   "Orrin",      "Pellworth",  "Quarrow",
        "Ravensholm", "Saltmarsh",  "Tarnby",       "Ullswick",   "Vennor",     "Wrexley",
        "Yarrowby",   "Ashgrove",   "Blackmere",    "Dunholme",   "Emberly",    "Fallowmere",
        "Glenrith",   "Harwick",    "Inverlass",    "Kestermoor", "Morvale",    "Oakhurst",
        "Penmorrow",  "Redhallow",  "Thistlecombe", "Upwater",    "Aldermoor",  "Brackwater",
        "Cindermere", "Dovecote",   "Eastwold",     "Ferrowby",   "Greymouth",  "Hollin",
        "Irongate",   "Juniper",    "Kilnsey",      "Larkhill",   "Millbrook",  "Norrland",
        "Otterburn",  "Pinecroft",  "Quillon",      "Rookwood",   "Sandrick",   "Tellow",
        "Umberleigh", "Valecross",  "Wickmere",     "Yewdale",    "Zennor",     "Arnholt",
        "Bexford",    "Caddon",     "Drisdale",     "Elvanfoot",  "Frome",      "Gorran",
        "Helmsby",    "Ilverton",   "Jarrow",       "Kelso",      "Lowick",     "Merrow",
        "Nantle",     "Ormsby",     "Pollard",      "Rhosneigr",  "Stainby",    "Torrin",
        "Ulverby",    "Vexley",     "Westray",      "Axton",      "Birling",    "Corrie",
        "Dunstan",    "Edgemoor",   "Fairhaven",    "Gilsland",   "Hatherley",  "Kirkwall",
        "Lisvane",    "Mardale",    "Nolton",       "Overstrand", "Porthallow", "Rosemarkie",
        "Skelwith",   "Trewint",    "Wansbeck"}},
      {"prefix",
       {"North", "Blue",   "Silver",  "Iron",  "Harbor",   "Bright", "Stone", "Kestrel", "Amber",
        "Cedar", "Falcon", "Granite", "Lumen", "Meridian", "Oak",    "Pine",  "Red",     "Summit",
        "True",  "West",   "Copper",  "Swift", "Clear",    "High",   "Long"}},
      {"suffix",
       {"wind", "crest", "line", "field", "gate", "brook", "ridge", "stone", "light", "way", "hold",
        "mark", "bridge", "haven", "point"}},
      {"sector", {"Logistics",       "Foods",    "Analytics",   "Textiles",   "Freight",
                  "Energy",          "Robotics", "Outfitters",  "Paperworks", "Systems",
                  "Pharmaceuticals", "Ceramics", "Instruments", "Holdings",   "Components",
                  "Brewing",         "Software", "Materials",   "Optics",     "Packaging"}},
      {"field",
       {"Maritime", "Marine", "Agricultural", "Geological", "Climate", "Polar", "Coastal",
        "Forestry", "Hydrology", "Public Health", "Soil Science", "Transport"}},
      {"subject",
       {"Medicine", "Engineering", "Art and Design", "Music", "Agriculture", "Nursing", "Law",
        "Architecture"}},
      {"public_body",
       {"Water Authority", "Heritage Trust", "Conservation Trust", "Transit Authority",
        "District Council", "Health Board", "Wildlife Trust", "Development Agency", "Harbour Board",
        "Rivers Trust", "Parks Service", "Arts Council"}},
      {"town_suffix", {"ton", "by", "ford", "wick", "ham", "stead", "bury", "mouth", "field"}},
      {"product",
       {"industrial pumps", "frozen vegetables", "garden furniture", "bicycle components",
        "medical gloves", "paper packaging", "solar inverters", "kitchen knives", "hiking boots",
        "school textbooks", "cleaning products", "office chairs", "greenhouse film",
        "marine paints", "dairy products", "hearing aids", "ceramic tiles", "fishing nets"}},
      {"item",
       {"ceramic mug", "wool scarf", "desk lamp", "water bottle", "notebook set", "phone case",
        "chef's knife", "yoga mat", "travel adapter", "rain jacket", "espresso cups", "bike light",
        "linen tea towel", "wireless mouse", "hiking socks", "cast iron pan"}},
      {"profession",
       {"botanist", "architect", "cartographer", "composer", "marine biologist", "engineer",
        "historian", "glaciologist", "economist", "painter", "surveyor", "astronomer",
        "structural engineer", "photographer", "epidemiologist", "novelist"}},
      {"study_topic",
       {"sleep and shift work", "coastal erosion", "urban heat", "river pollution", "school meals",
        "commuting and health", "bee populations", "soil carbon", "loneliness in later life",
        "hearing loss", "household energy use", "reading habits"}},
      {"condition",
       {"light rain", "overcast", "sunny", "partly cloudy", "fog", "showers", "clear",
        "thunderstorms", "drizzle", "windy"}},
      {"department",
       {"Finance", "Customer Support", "Procurement", "Platform Engineering", "Legal", "Facilities",
        "Data Science", "Marketing", "Field Operations", "People Services"}},
      {"job_title",
       {"Senior Analyst", "Support Lead", "Staff Engineer", "Buyer", "Contracts Manager",
        "Operations Coordinator", "Product Designer", "Payroll Specialist", "Site Manager"}},
      {"service",
       {"inventory", "billing", "telemetry", "search", "checkout", "notifications", "ledger",
        "catalogue", "scheduler", "ingest", "reporting", "payments"}},
      {"decade", {"sixties", "seventies", "eighties", "nineties"}},
      {"doc_topic",
       {"expense claims", "parental leave", "laptop encryption", "travel booking",
        "incident response", "data retention", "office access cards", "vendor onboarding",
        "remote work equipment", "code review", "on-call pay", "visitor registration"}},
      // Identifiers for the code family, one pool per role.
      {"py_serve_fn",
       {"start_server", "run_http_server", "launch_api", "serve_api", "boot_service"}},
      {"py_handler", {"IngestHandler", "StatusHandler", "ApiRequestHandler", "QueueHandler"}},
      {"retry_key", {"max_retries", "retry_limit", "max_attempts", "attempt_cap"}},
      {"backoff_key", {"backoff_factor", "backoff_base", "retry_backoff", "sleep_multiplier"}},
      {"timeout_key", {"timeout_ms", "request_timeout_ms", "upstream_timeout_ms", "deadline_ms"}},
      {"py_fetch_fn",
       {"fetch_with_retry", "get_with_backoff", "request_json", "call_upstream", "get_resource"}},
      {"py_client_cls", {"UpstreamClient", "RetryingClient", "ServiceClient", "ApiSession"}},
      {"cpp_limiter", {"TokenBucket", "RateLimiter", "RequestThrottle", "CallBudget"}},
      {"cpp_acquire", {"TryAcquire", "Admit", "TakeToken", "AllowRequest"}},
      {"cpp_refill", {"Refill", "TopUp", "Replenish", "AddTokens"}},
      {"pool_key", {"pool_size", "max_connections", "conn_pool_max", "max_open_conns"}},
      {"ttl_key", {"ttl_seconds", "cache_ttl_s", "expire_after_s", "entry_lifetime_s"}},
      {"flag_key", {"enable_bulk_export", "use_async_writes", "strict_validation", "shadow_reads"}},
      {"bash_health_fn", {"wait_for_health", "check_ready", "poll_health", "await_healthy"}},
      {"bash_rollback_fn",
       {"rollback_release", "undo_rollout", "revert_deploy", "restore_previous"}},
      {"py_parse_fn", {"parse_manifest", "load_manifest", "read_manifest_file", "open_manifest"}},
      {"py_verify_fn", {"check_file_size", "verify_entry", "validate_payload", "confirm_size"}},
      {"manifest_field", {"entrypoint", "publisher", "license_id", "build_target", "min_runtime"}},
      {"cpp_cache", {"LruCache", "PageCache", "RenderCache", "EntryCache"}},
      {"cpp_evict", {"EvictOldest", "DropLeastRecent", "TrimToCapacity", "PopColdest"}},
      {"cpp_lookup", {"FindPage", "LookupPage", "GetRendered", "ReadEntry"}},
      {"ci_test_job", {"unit_tests", "run_tests", "test_suite", "ctest_shards"}},
      {"ci_lint_job", {"static_checks", "format_check", "style_gate", "lint_sources"}},
      {"ci_cache_key", {"build-cache", "cmake-deps", "ccache-main", "toolchain-cache"}},
      {"ci_image",
       {"gcc:latest", "debian:bookworm", "ubuntu:noble", "registry.internal/toolchain:stable"}},
  };
  static const Strings kEmpty;
  const auto it = pools->find(name);
  return it == pools->end() ? kEmpty : it->second;
}

// ---------------------------------------------------------------------------------------------
// The writer.

namespace {

constexpr std::string_view kMonths[] = {"January",   "February", "March",    "April",
                                        "May",       "June",     "July",     "August",
                                        "September", "October",  "November", "December"};

// The `close` matching an `open` that ends just before `from`; npos when unbalanced.
size_t MatchClose(std::string_view s, size_t from, std::string_view open, std::string_view close) {
  int depth = 1;
  size_t i = from;
  while (i < s.size()) {
    if (s.substr(i, open.size()) == open) {
      ++depth;
      i += open.size();
    } else if (s.substr(i, close.size()) == close) {
      if (--depth == 0) return i;
      i += close.size();
    } else {
      ++i;
    }
  }
  return std::string_view::npos;
}

// `s` split at the '|' that are outside nested open/close pairs.
std::vector<std::string_view> SplitTop(std::string_view s, std::string_view open,
                                       std::string_view close) {
  std::vector<std::string_view> parts;
  int depth = 0;
  size_t start = 0;
  size_t i = 0;
  while (i < s.size()) {
    if (s.substr(i, open.size()) == open) {
      ++depth;
      i += open.size();
    } else if (s.substr(i, close.size()) == close) {
      --depth;
      i += close.size();
    } else {
      if (s[i] == '|' && depth == 0) {
        parts.push_back(s.substr(start, i - start));
        start = i + 1;
      }
      ++i;
    }
  }
  parts.push_back(s.substr(start));
  return parts;
}

int64_t Arg(const std::vector<std::string_view>& args, size_t i, int64_t fallback) {
  if (i >= args.size()) return fallback;
  int64_t v = 0;
  bool neg = false;
  for (char c : args[i]) {
    if (c == '-') {
      neg = true;
    } else if (c >= '0' && c <= '9') {
      v = v * 10 + (c - '0');
    }
  }
  return neg ? -v : v;
}

}  // namespace

std::string Writer::Number(std::string s) {
  numbers_.push_back(s);
  return s;
}

std::string Writer::Entity(std::string s) {
  entities_.push_back(s);
  return s;
}

bool Writer::Claim(std::string s) { return used_.insert(std::move(s)).second; }

void Writer::Reserve(std::string s) {
  if (!s.empty()) reserved_.push_back(std::move(s));
}

bool Writer::Clashes(std::string_view s) const {
  for (const std::string& r : reserved_) {
    if (s.find(r) != std::string_view::npos) return true;
  }
  return false;
}

void Writer::Setup(const Strings& lines, Vars& vars) {
  for (std::string_view line : lines) {
    const size_t eq = line.find('=');
    if (eq == std::string_view::npos) continue;
    vars[std::string(line.substr(0, eq))] = Expand(line.substr(eq + 1), vars);
  }
}

std::string Writer::Expand(std::string_view tmpl, const Vars& vars, std::string_view open,
                           std::string_view close) {
  std::string out;
  size_t i = 0;
  while (i < tmpl.size()) {
    const size_t p = tmpl.find(open, i);
    if (p == std::string_view::npos) {
      out += tmpl.substr(i);
      break;
    }
    out += tmpl.substr(i, p - i);
    const size_t c = MatchClose(tmpl, p + open.size(), open, close);
    if (c == std::string_view::npos) {
      out += tmpl.substr(p);
      break;
    }
    out += ExpandInner(tmpl.substr(p + open.size(), c - p - open.size()), vars, open, close);
    i = c + close.size();
  }
  return out;
}

std::string Writer::ExpandInner(std::string_view content, const Vars& vars, std::string_view open,
                                std::string_view close) {
  const std::vector<std::string_view> parts = SplitTop(content, open, close);
  if (parts.size() > 1) return Expand(parts[rng_.Below(parts.size())], vars, open, close);
  if (content.empty()) return "";
  const std::string_view rest = content.substr(1);
  switch (content[0]) {
    case '#':
      return Generate(rest);
    case '=':
      return Number(std::string(rest));
    case '@':
      return Entity(Expand(rest, vars, open, close));
    case '^': {
      std::string s = Expand(rest, vars, open, close);
      if (!s.empty()) s[0] = static_cast<char>(std::toupper(static_cast<unsigned char>(s[0])));
      return s;
    }
    case '!': {
      std::string s = Expand(rest, vars, open, close);
      for (char& c : s) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
      return s;
    }
    case '_': {
      std::string s = Expand(rest, vars, open, close);
      for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
      return s;
    }
    default:
      break;
  }
  const auto it = vars.find(content);
  if (it == vars.end()) return absl::StrCat("[[missing:", Av(content), "]]");
  return it->second;
}

std::string Writer::Generate(std::string_view spec) {
  std::vector<std::string_view> parts;
  for (size_t start = 0;;) {
    const size_t colon = spec.find(':', start);
    parts.push_back(spec.substr(start, colon == std::string_view::npos ? colon : colon - start));
    if (colon == std::string_view::npos) break;
    start = colon + 1;
  }
  const std::string_view kind = parts[0];
  const std::vector<std::string_view> args(parts.begin() + 1, parts.end());
  std::string s;
  bool name = false;
  int record = 0;  // 1: number, 2: name
  for (int attempt = 0; attempt < 40; ++attempt) {
    s = Make(kind, args, name, record);
    if (Clashes(s) || (name && used_.count(s) > 0)) continue;
    break;
  }
  if (name) used_.insert(s);
  if (record == 1) Number(s);
  if (record == 2) Entity(s);
  return s;
}

std::string Writer::Make(std::string_view kind, const std::vector<std::string_view>& args,
                         bool& name, int& record) {
  Rng& r = rng_;
  auto pick = [&](std::string_view pool) { return std::string(r.Pick(Pool(pool))); };
  auto root = [&] {
    std::string s;
    for (int i = 0; i < 30; ++i) {
      s = pick("root");
      if (used_.count(s) == 0 && !Clashes(s)) break;
    }
    used_.insert(s);
    return s;
  };
  auto currency = [&] {
    const uint64_t c = r.Below(10);
    return std::string(c < 6 ? "$" : c < 8 ? "€" : "£");
  };
  const int64_t lo = Arg(args, 0, 0);
  const int64_t hi = Arg(args, 1, 0);
  record = 1;
  name = false;
  if (kind == "int") return Commas(r.Range(lo, hi));
  if (kind == "num" || kind == "year") return std::to_string(r.Range(lo, hi));
  if (kind == "date" || kind == "iso" || kind == "isotime" || kind == "monthyear") {
    const int64_t year = r.Range(lo == 0 ? 1950 : lo, hi == 0 ? 2024 : hi);
    const int month = static_cast<int>(r.Below(12));
    const int day = static_cast<int>(r.Range(1, 28));
    if (kind == "monthyear") return absl::StrCat(Av(kMonths[month]), " ", year);
    if (kind == "iso") return IsoDate(year, month + 1, day);
    if (kind == "isotime") {
      return IsoTime(year, month + 1, day, r.Range(5, 22) * 60 + r.Below(12) * 5);
    }
    if (r.Percent(30)) return absl::StrCat(Av(kMonths[month]), " ", day, ", ", year);
    return absl::StrCat(day, " ", Av(kMonths[month]), " ", year);
  }
  if (kind == "time") return absl::StrCat(Pad(r.Range(7, 21), 2), ":", Pad(r.Below(12) * 5, 2));
  if (kind == "dec") {
    int64_t p = 1;
    const int places = static_cast<int>(Arg(args, 2, 1));
    for (int i = 0; i < places; ++i) p *= 10;
    return Fixed(r.Range(lo * p, hi * p), places);
  }
  if (kind == "pct") {
    if (r.Percent(50)) return absl::StrCat(r.Range(lo, hi), "%");
    return absl::StrCat(Fixed(r.Range(lo * 10, hi * 10 - 1), 1), "%");
  }
  if (kind == "mill") {
    const int64_t v = r.Range(lo, hi);
    return absl::StrCat(currency(), v % 10 == 0 ? std::to_string(v / 10) : Fixed(v, 1), " million");
  }
  if (kind == "cash") {
    const int64_t step = hi >= 100000 ? 1000 : hi >= 10000 ? 100 : hi >= 1000 ? 50 : 5;
    const int64_t v = std::max<int64_t>(step, r.Range(lo, hi) / step * step);
    return currency() + Commas(v);
  }
  if (kind == "price") {
    static constexpr int kCents[] = {0, 50, 99, 95, 49, 25, 75, 90};
    const int cents = r.Percent(75) ? kCents[r.Below(8)] : static_cast<int>(r.Below(100));
    return absl::StrCat(currency(), r.Range(lo, hi), ".", Pad(cents, 2));
  }
  if (kind == "unit") {
    const std::string_view unit = args.empty() ? "m" : args[0];
    const int64_t a = Arg(args, 1, 1), b = Arg(args, 2, 100);
    const int places = static_cast<int>(Arg(args, 3, 0));
    int64_t p = 1;
    for (int i = 0; i < places; ++i) p *= 10;
    const int64_t v = r.Range(a * p, b * p);
    return absl::StrCat(places > 0 ? Fixed(v, places) : Commas(v), " ", Av(unit));
  }
  if (kind == "id") {
    std::string s;
    bool after_digit = false;
    for (char c : args.empty() ? std::string_view("LL-DDDD") : args[0]) {
      if (c == 'L') {
        static constexpr char kLetters[] = "ABCDEFGHJKLMNPQRSTUVWXYZ";
        s += kLetters[r.Below(24)];
        after_digit = false;
      } else if (c == 'D') {
        s += static_cast<char>('0' + (after_digit ? r.Below(10) : 1 + r.Below(9)));
        after_digit = true;
      } else {
        s += c;
        after_digit = false;
      }
    }
    return s;
  }
  record = 0;
  if (kind == "small") return NumberWord(static_cast<int>(r.Range(lo, hi)));
  if (kind == "w") return args.empty() ? "" : pick(args[0]);
  if (kind == "first") return pick("first");
  if (kind == "surname") return pick("surname");
  // root() keeps roots unique itself; the names below are checked against used_ by Generate.
  if (kind == "root") return root();
  if (kind == "town") {
    std::string base = root();
    return r.Percent(50) ? base : base + pick("town_suffix");
  }
  name = true;
  if (kind == "uw") return args.empty() ? "" : pick(args[0]);
  record = 2;
  if (kind == "person") return absl::StrCat(pick("first"), " ", pick("surname"));
  if (kind == "place") {
    static constexpr const char* kBefore[] = {"Port ",  "Lake ", "Mount ", "North ", "South ",
                                              "Upper ", "East ", "Glen ",  "Cape ",  "West "};
    static constexpr const char* kAfter[] = {" Bay",     " Valley",  " Springs", " Crossing",
                                             " Heights", " Harbour", " Sound",   " Junction",
                                             " Point",   " Green",   " Wells",   " Ridge"};
    if (r.Percent(40)) return absl::StrCat(kBefore[r.Below(10)], root());
    return absl::StrCat(root(), kAfter[r.Below(12)]);
  }
  if (kind == "org") {
    std::string_view type = args.empty() ? "any" : args[0];
    if (type == "any") {
      static constexpr std::string_view kTypes[] = {"company", "builder", "academic", "public"};
      type = kTypes[r.Below(4)];
    }
    auto brand = [&] { return pick("prefix") + pick("suffix"); };
    const uint64_t v = r.Below(4);
    if (type == "builder") {
      if (v == 0) return pick("surname") + " Construction";
      if (v == 1) return brand() + " Civil Engineering";
      if (v == 2) return root() + " Structural Works";
      return absl::StrCat(pick("surname"), " & ", pick("surname"), " Builders");
    }
    if (type == "academic") {
      if (v == 0) return absl::StrCat(pick("surname"), " ", pick("field"), " Institute");
      if (v == 1) return "University of " + root();
      if (v == 2) return absl::StrCat(root(), " College of ", pick("subject"));
      return absl::StrCat(root(), " Centre for ", pick("field"), " Research");
    }
    if (type == "public") return absl::StrCat(root(), " ", pick("public_body"));
    if (type == "shipyard") {
      if (v < 2) return root() + " Shipyards";
      return v == 2 ? pick("surname") + " Marine Works" : brand() + " Shipbuilding";
    }
    if (type == "carrier") {
      static constexpr const char* kKinds[] = {" Freight", " Express", " Parcel Services",
                                               " Couriers", " Logistics"};
      return brand() + kKinds[r.Below(5)];
    }
    if (type == "airline") {
      if (v == 0) return root() + " Air";
      return v == 1 ? brand() + " Airways" : root() + " Airlines";
    }
    if (v == 0) return absl::StrCat(pick("surname"), " ", pick("sector"));
    if (v == 1) return absl::StrCat(root(), " ", pick("sector"));
    if (v == 2) return absl::StrCat(pick("surname"), " & ", pick("surname"));
    return absl::StrCat(brand(), " ", pick("sector"));
  }
  record = 0;
  name = false;
  return absl::StrCat("[[bad:", Av(kind), "]]");
}

}  // namespace terse::eval::internal
