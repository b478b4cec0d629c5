// Two passes over the units: first what is glued together without spaces (identifiers, signs,
// currencies, percentages), then what one space separates (units of measure, dates, names).
#include "compressor/whole_units.h"

#include <algorithm>
#include <iterator>
#include <string>

namespace terse::compressor::lingua {
namespace {

constexpr std::string_view kCurrencies[] = {"$", "\xE2\x82\xAC", "\xC2\xA3", "\xC2\xA5",
                                            "\xE2\x82\xB9"};  // $ € £ ¥ ₹

// Words that, after a number and one space, say what the number counts in.
constexpr std::string_view kUnitWords[] = {
    "million", "billion", "trillion",   "thousand",   "hundred", "percent", "km",    "m",
    "cm",      "mm",      "kg",         "g",          "mg",      "lb",      "lbs",   "oz",
    "tonnes",  "tons",    "t",          "mi",         "miles",   "ft",      "feet",  "yd",
    "metres",  "meters",  "kilometres", "kilometers", "L",       "l",       "ml",    "mL",
    "litres",  "liters",  "gallons",    "h",          "hr",      "hrs",     "hours", "min",
    "mins",    "minutes", "s",          "sec",        "seconds", "ms",      "mph",   "kph",
    "GB",      "MB",      "KB",         "TB",         "GHz",     "MHz",     "kW",    "kWh",
    "MW",      "USD",     "EUR",        "GBP",        "dollars", "euros"};

constexpr std::string_view kMonths[] = {
    "January",   "February", "March",    "April",    "May",  "June", "July", "August",
    "September", "October",  "November", "December", "Jan",  "Feb",  "Mar",  "Apr",
    "Jun",       "Jul",      "Aug",      "Sep",      "Sept", "Oct",  "Nov",  "Dec"};

// Lower-case words that may stand inside a name between capitalised words.
constexpr std::string_view kNameConnectors[] = {"of",  "de",  "du", "del", "der",
                                                "van", "von", "da", "la",  "al"};

// Capitalised function words: a sentence may start with one before a name, which it is not part
// of ("The", "In", "When").
constexpr std::string_view kFunctionWords[] = {
    "The",    "A",    "An",  "This", "That",  "These", "Those", "In",    "On",    "At",
    "For",    "From", "By",  "With", "As",    "If",    "When",  "While", "After", "Before",
    "During", "But",  "And", "Or",   "So",    "Then",  "It",    "He",    "She",   "We",
    "They",   "I",    "You", "Our",  "Their", "His",   "Her",   "Its",   "My",    "Your",
    "Is",     "Are",  "Was", "Were", "Do",    "Does",  "Did",   "Who",   "What",  "Which",
    "Where",  "Why",  "How", "To",   "Of",    "Not",   "No",    "Yes"};

template <size_t N>
bool OneOf(std::string_view s, const std::string_view (&words)[N]) {
  return std::find(std::begin(words), std::end(words), s) != std::end(words);
}

bool IsDigit(char c) { return c >= '0' && c <= '9'; }
bool HasDigit(std::string_view s) { return std::any_of(s.begin(), s.end(), IsDigit); }

// Digits with inner '.' or ',' (what Splitter makes of "3.50" and "1,000"), after an optional
// sign or currency and before an optional '%'.
bool IsNumeric(std::string_view s) {
  for (std::string_view c : kCurrencies) {
    if (s.starts_with(c)) s.remove_prefix(c.size());
  }
  if (!s.empty() && (s.front() == '-' || s.front() == '+')) s.remove_prefix(1);
  if (!s.empty() && s.back() == '%') s.remove_suffix(1);
  if (s.empty() || !IsDigit(s.front()) || !IsDigit(s.back())) return false;
  return std::all_of(s.begin(), s.end(), [](char c) { return IsDigit(c) || c == '.' || c == ','; });
}

bool IsDigits(std::string_view s, size_t min_len, size_t max_len) {
  return s.size() >= min_len && s.size() <= max_len && std::all_of(s.begin(), s.end(), IsDigit);
}

bool IsDay(std::string_view s) {
  if (!IsDigits(s, 1, 2)) return false;
  const int day = s.size() == 1 ? s[0] - '0' : (s[0] - '0') * 10 + (s[1] - '0');
  return day >= 1 && day <= 31;
}

bool IsYear(std::string_view s) { return IsDigits(s, 4, 4); }

// A word that starts with an ASCII capital and has no digit: "Bramwell", "NASA", "O'Neill".
bool IsCapitalised(std::string_view s) {
  if (s.size() < 2 || s.front() < 'A' || s.front() > 'Z') return false;
  return std::none_of(s.begin(), s.end(), [](char c) {
    return IsDigit(c) || c == '.' || c == ',' || c == ':' || c == ';' || c == '!' || c == '?' ||
           c == '(' || c == ')' || c == '"';
  });
}

enum class Gap { kNone, kSpace, kOther };

class Joiner {
 public:
  Joiner(std::string_view text, const std::vector<size_t>& breaks, std::vector<Unit>& units)
      : t_(text), breaks_(breaks), units_(units) {}

  void Run() {
    Pass([this](size_t i) { return GluedEnd(i); });
    Pass([this](size_t i) { return SpacedEnd(i); });
  }

 private:
  std::string_view Text(size_t i) const {
    return t_.substr(units_[i].begin, units_[i].end - units_[i].begin);
  }
  bool Plain(size_t i) const {
    return i < units_.size() && !(units_[i].flags & kUnitVerbatim) && units_[i].json < 0;
  }
  // How unit i+1 follows unit i; kOther also when a markup boundary lies between them.
  Gap After(size_t i) const {
    if (!Plain(i) || !Plain(i + 1)) return Gap::kOther;
    const size_t a = units_[i].end, b = units_[i + 1].begin;
    const auto it = std::lower_bound(breaks_.begin(), breaks_.end(), a);
    if (it != breaks_.end() && *it <= b) return Gap::kOther;
    if (a == b) return Gap::kNone;
    return b - a == 1 && t_[a] == ' ' ? Gap::kSpace : Gap::kOther;
  }

  // Replaces units [i, end) by one unit wherever end > i + 1.
  template <typename EndOf>
  void Pass(EndOf end_of) {
    std::vector<Unit> out;
    out.reserve(units_.size());
    for (size_t i = 0; i < units_.size();) {
      const size_t end = Plain(i) ? end_of(i) : i + 1;
      Unit u = units_[i];
      u.end = units_[end - 1].end;
      out.push_back(u);
      i = end;
    }
    units_.swap(out);
  }

  // "KX-4821", "00:12:31", "-4", "$3.50", "15%": units glued together, one of them with digits.
  size_t GluedEnd(size_t i) const {
    size_t end = i + 1;
    bool digits = HasDigit(Text(i));
    // A sign or currency right before a number; a sign only where no word is glued before it.
    const std::string_view first = Text(i);
    const bool sign =
        (first == "-" || first == "+") && (i == 0 || units_[i - 1].end < units_[i].begin);
    if ((sign || OneOf(first, kCurrencies)) && After(i) == Gap::kNone && IsNumeric(Text(i + 1))) {
      end = i + 2;
      digits = true;
    }
    // Pieces joined by '-', ':' or '/' with no space.
    while (end + 1 < units_.size() && After(end - 1) == Gap::kNone && After(end) == Gap::kNone) {
      const std::string_view joiner = Text(end);
      const std::string_view next = Text(end + 1);
      if (joiner != "-" && joiner != ":" && joiner != "/") break;
      if (!std::all_of(next.begin(), next.end(), [](char c) {
            return IsDigit(c) || (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z');
          })) {
        break;
      }
      digits = digits || HasDigit(next);
      end += 2;
    }
    if (!digits) return i + 1;
    if (end < units_.size() && After(end - 1) == Gap::kNone && Text(end) == "%") ++end;
    return end;
  }

  // "3.5 km", "14 March 2003", "March 14, 2003", "Idris Bramwell": units one space apart.
  size_t SpacedEnd(size_t i) const {
    const std::string_view first = Text(i);
    const auto spaced = [&](size_t k) { return k + 1 < units_.size() && After(k) == Gap::kSpace; };
    if (IsDay(first) && spaced(i) && OneOf(Text(i + 1), kMonths)) {
      return spaced(i + 1) && IsYear(Text(i + 2)) ? i + 3 : i + 2;
    }
    if (OneOf(first, kMonths) && spaced(i)) {
      const std::string_view next = Text(i + 1);
      if (IsYear(next)) return i + 2;
      if (IsDay(next)) {
        size_t end = i + 2;
        if (end + 1 < units_.size() && After(end - 1) == Gap::kNone && Text(end) == "," &&
            spaced(end) && IsYear(Text(end + 1))) {
          end += 2;
        } else if (spaced(end - 1) && IsYear(Text(end))) {
          end += 1;
        }
        return end;
      }
    }
    if (IsNumeric(first) && spaced(i) && OneOf(Text(i + 1), kUnitWords)) return i + 2;
    if (IsCapitalised(first) && !OneOf(first, kFunctionWords)) {
      size_t end = i + 1, words = 1;
      while (words < 6 && spaced(end - 1)) {
        const std::string_view next = Text(end);
        if (IsCapitalised(next) && !OneOf(next, kFunctionWords)) {
          ++end, ++words;
        } else if (OneOf(next, kNameConnectors) && spaced(end) && IsCapitalised(Text(end + 1)) &&
                   !OneOf(Text(end + 1), kFunctionWords)) {
          end += 2, ++words;
        } else {
          break;
        }
      }
      if (words >= 2) return end;
    }
    return i + 1;
  }

  std::string_view t_;
  const std::vector<size_t>& breaks_;
  std::vector<Unit>& units_;
};

}  // namespace

void JoinWholeUnits(std::string_view text, const std::vector<size_t>& breaks,
                    std::vector<Unit>* units) {
  Joiner(text, breaks, *units).Run();
}

}  // namespace terse::compressor::lingua
