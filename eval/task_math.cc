// fewshot_math content: word-problem templates written as code, so every answer is computed.
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "eval/task_words.h"

namespace terse::eval::internal {

// ---------------------------------------------------------------------------------------------
// fewshot_math: problem templates written as code, so every answer is computed, not typed.

namespace {

std::string JoinWith(const std::vector<std::string>& parts, std::string_view sep) {
  std::string out;
  for (size_t i = 0; i < parts.size(); ++i) out += (i > 0 ? std::string(sep) : "") + parts[i];
  return out;
}

}  // namespace

// Each template draws its numbers so the arithmetic is exact, records every number it writes,
// and phrases the question with a few alternatives.
Problem MathProblem(Writer& w, int which) {
  Rng& r = w.rng();
  auto n = [&](int64_t v) { return w.Number(std::to_string(v)); };
  auto usd = [&](int64_t v) { return w.Number(absl::StrCat("$", internal::Commas(v))); };
  auto with = [&](int64_t v, std::string_view unit) {
    return w.Number(absl::StrCat(v, " ", Av(unit)));
  };
  Vars v = {{"n", w.Generate("first")}, {"m", w.Generate("first")}};
  while (v["m"] == v["n"]) v["m"] = w.Generate("first");
  auto x = [&](std::string_view tmpl) { return w.Expand(tmpl, v); };
  Problem p;
  auto finish = [&](std::string q, std::vector<std::string> steps, std::string answer) {
    p.question = std::move(q);
    p.reasoning = JoinWith(steps, " ");
    p.answer = std::move(answer);
  };
  switch (which) {
    case 0: {
      const int64_t a = r.Range(2, 9), b = r.Range(6, 24), c = r.Range(2, a * b - 1);
      v["a"] = n(a), v["b"] = n(b), v["c"] = n(c), v["ab"] = n(a * b), v["r"] = n(a * b - c);
      finish(x("{n} buys {a} boxes of pencils{| for school} with {b} pencils in each box. {n} "
               "{gives|hands} {c} pencils to a classmate. How many pencils does {n} have left?"),
             {x("{n} buys {a} boxes of {b} pencils, so {a} * {b} = {ab} pencils."),
              x("After giving away {c}, {ab} - {c} = {r} pencils are left.")},
             v["r"]);
      break;
    }
    case 1: {
      const int64_t s1 = r.Range(8, 24) * 5, h1 = r.Range(2, 5), s2 = r.Range(8, 24) * 5,
                    h2 = r.Range(2, 5);
      v["s1"] = n(s1), v["h1"] = n(h1), v["s2"] = n(s2), v["h2"] = n(h2);
      v["d1"] = n(s1 * h1), v["d2"] = n(s2 * h2), v["d"] = n(s1 * h1 + s2 * h2);
      v["d1k"] = with(s1 * h1, "km"), v["d2k"] = with(s2 * h2, "km");
      v["dk"] = with(s1 * h1 + s2 * h2, "km");
      finish(x("A {train|coach|freight train} travels at {s1} kilometres per hour for {h1} hours "
               "and then at {s2} kilometres per hour for {h2} hours. How many kilometres does it "
               "travel in total?"),
             {x("In the first part it covers {s1} * {h1} = {d1k}."),
              x("In the second part it covers {s2} * {h2} = {d2k}."),
              x("Altogether that is {d1} + {d2} = {dk}.")},
             v["d"]);
      break;
    }
    case 2: {
      const int64_t t = r.Range(2, 6), k = r.Range(2, 6), b = r.Range(3, 8);
      v["t"] = n(t), v["c"] = n(k * b), v["b"] = n(b), v["tot"] = n(t * k * b), v["r"] = n(t * k);
      finish(x("{n} bakes {t} trays of {cookies|muffins|scones} with {c} on each tray and packs "
               "them into bags of {b}. How many bags does {n} fill?"),
             {x("{n} bakes {t} * {c} = {tot} in total."),
              x("Packing them {b} to a bag gives {tot} / {b} = {r} bags.")},
             v["r"]);
      break;
    }
    case 3: {
      const int64_t wk = r.Range(5, 40), k = r.Range(4, 20), s = r.Range(10, wk * k - 5);
      v["w"] = usd(wk), v["k"] = n(k), v["s"] = usd(s), v["tot"] = usd(wk * k);
      v["r"] = usd(wk * k - s);
      finish(x("{n} saves {w} every week. After {k} weeks, {n} spends {s} on a {bike|guitar|tent}. "
               "How much money does {n} have left?"),
             {x("In {k} weeks {n} saves {k} * {w} = {tot}."),
              x("After the purchase, {tot} - {s} = {r} is left.")},
             n(wk * k - s));
      break;
    }
    case 4: {
      const int64_t c = r.Range(3, 12), s = r.Range(18, 32), a = r.Range(2, 25);
      v["c"] = n(c), v["s"] = n(s), v["a"] = n(a), v["tot"] = n(c * s), v["r"] = n(c * s - a);
      finish(x("A school has {c} classes with {s} students in each class. On {Monday|Friday}, {a} "
               "students are absent. How many students are at school that day?"),
             {x("There are {c} * {s} = {tot} students in total."),
              x("With {a} absent, {tot} - {a} = {r} students are present.")},
             v["r"]);
      break;
    }
    case 5: {
      const int64_t rows = r.Range(3, 9), per = r.Range(4, 12), each = r.Range(5, 20);
      v["a"] = n(rows), v["b"] = n(per), v["c"] = n(each), v["pl"] = n(rows * per);
      v["tot"] = n(rows * per * each);
      finish(x("{n} plants {a} rows of tomatoes with {b} plants in each row. Each plant "
               "{gives|produces} {c} tomatoes. How many tomatoes does {n} harvest?"),
             {x("There are {a} * {b} = {pl} plants."),
              x("Each gives {c} tomatoes, so {pl} * {c} = {tot} tomatoes.")},
             v["tot"]);
      break;
    }
    case 6: {
      const int64_t d = r.Range(2, 15), k = r.Range(2, 10), future = r.Range(d + k + 6, 70);
      v["d"] = n(d), v["k"] = n(k), v["x"] = n(future), v["a"] = n(future - k);
      v["b"] = n(future - k - d);
      finish(
          x("{n} is {d} years older than {m}. In {k} years, {n} will be {x} years old. How old "
            "is {m} now?"),
          {x("{n} is {x} - {k} = {a} years old now."), x("So {m} is {a} - {d} = {b} years old.")},
          v["b"]);
      break;
    }
    case 7: {
      const int64_t price = r.Range(2, 15) * 20;
      const int64_t pct = PickOf<int64_t>(r, {10, 20, 25, 50});
      const int64_t off = price * pct / 100;
      v["p"] = usd(price), v["pct"] = w.Number(absl::StrCat(pct, "%")), v["q"] = n(pct);
      v["h"] = n(100), v["d"] = usd(off), v["r"] = usd(price - off);
      finish(x("A {jacket|lamp|pair of boots} costs {p}. The shop takes {pct} off. How much does "
               "it cost after the discount?"),
             {x("The discount is {pct} of {p}, which is {p} * {q} / {h} = {d}."),
              x("The sale price is {p} - {d} = {r}.")},
             n(price - off));
      break;
    }
    case 8: {
      const int64_t a = r.Range(10, 40), total = r.Range(3 * a + 10, 400);
      v["a"] = n(a), v["two"] = n(2), v["b"] = n(2 * a), v["c"] = n(3 * a), v["t"] = n(total);
      v["r"] = n(total - 3 * a);
      finish(
          x("{n} reads {a} pages of a book on Monday and twice as many pages on Tuesday. The "
            "book has {t} pages. How many pages are left to read?"),
          {x("On Tuesday {n} reads {two} * {a} = {b} pages."),
           x("Altogether that is {a} + {b} = {c} pages."), x("So {t} - {c} = {r} pages are left.")},
          v["r"]);
      break;
    }
    case 9: {
      const int64_t k = r.Range(1, 4) * 2, half = 2 * r.Range(1, 9) + 1;  // piece = half / 2
      const int64_t len = k * half / 2;
      v["l"] = n(len), v["k"] = n(k), v["p"] = w.Number(internal::Fixed(half * 5, 1));
      finish(x("{n} cuts a {rope|ribbon|length of pipe} that is {l} metres long into {k} equal "
               "pieces. How long is each piece in metres?"),
             {x("The {l} metres are shared equally between {k} pieces."),
              x("Each piece is {l} / {k} = {p} metres long.")},
             v["p"]);
      break;
    }
    case 10: {
      const int64_t wage = r.Range(12, 30), h = r.Range(10, 40), rent = r.Range(50, wage * h - 10);
      v["w"] = usd(wage), v["h"] = n(h), v["rent"] = usd(rent), v["e"] = usd(wage * h);
      v["r"] = usd(wage * h - rent);
      finish(x("{n} earns {w} an hour and works {h} hours a week. {n} pays {rent} a week for "
               "rent. How much money is left each week?"),
             {x("{n} earns {h} * {w} = {e} a week."),
              x("After paying rent, {e} - {rent} = {r} is left.")},
             n(wage * h - rent));
      break;
    }
    case 11: {
      int64_t s = r.Range(40, 200), t = r.Range(3, 12), c = r.Range(20, 50);
      if ((s + t) % c == 0) ++s;
      const int64_t people = s + t, q = people / c;
      v["s"] = n(s), v["t"] = n(t), v["c"] = n(c), v["p"] = n(people), v["q"] = n(q);
      v["rem"] = n(people % c), v["one"] = n(1), v["q1"] = n(q + 1);
      finish(x("{s} students and {t} teachers are going on a {school trip|museum visit}. Each bus "
               "holds {c} people. How many buses do they need?"),
             {x("There are {s} + {t} = {p} people going."),
              x("{p} / {c} is {q} with {rem} left over."),
              x("The extra people need one more bus, so {q} + {one} = {q1} buses.")},
             v["q1"]);
      break;
    }
    case 12: {
      const int64_t a = r.Range(5, 40), p = r.Range(2, 6), b = r.Range(5, 40), q = r.Range(2, 7);
      v["ak"] = with(a, "kg"), v["bk"] = with(b, "kg"), v["a"] = n(a), v["b"] = n(b);
      v["p"] = usd(p), v["q"] = usd(q), v["x"] = usd(a * p), v["y"] = usd(b * q);
      v["z"] = usd(a * p + b * q);
      finish(x("A farmer sells {ak} of apples at {p} per kg and {bk} of pears at {q} per kg. How "
               "much money does the farmer make?"),
             {x("The apples bring in {a} * {p} = {x}."), x("The pears bring in {b} * {q} = {y}."),
              x("Together that is {x} + {y} = {z}.")},
             n(a * p + b * q));
      break;
    }
    case 13: {
      const int64_t rate = r.Range(5, 25), mins = r.Range(4, 30), have = r.Range(10, 200);
      const int64_t cap = have + rate * mins;
      v["c"] = n(cap), v["s"] = n(have), v["r"] = n(rate), v["need"] = n(rate * mins);
      v["m"] = n(mins);
      finish(x("A water tank holds {c} litres and already contains {s} litres. A hose adds {r} "
               "litres every minute. How many minutes will it take to fill the tank?"),
             {x("The tank still needs {c} - {s} = {need} litres."),
              x("At {r} litres a minute that takes {need} / {r} = {m} minutes.")},
             v["m"]);
      break;
    }
    case 14: {
      const int64_t k = r.Range(2, 4), a = r.Range(4, 25), total = a * (k + 1);
      int64_t f = k + 1;
      for (int64_t d : {4, 5, 6, 3, 2}) {
        if (total % d == 0 && r.Percent(50)) {
          f = d;
          break;
        }
      }
      v["a"] = n(a), v["k"] = n(k), v["y"] = n(a * k), v["t"] = n(total), v["f"] = n(f);
      v["per"] = n(total / f);
      finish(x("{n} has {a} stickers and {m} has {k} times as many. They put all their stickers "
               "together and share them equally among {f} friends. How many stickers does each "
               "friend get?"),
             {x("{m} has {k} * {a} = {y} stickers."),
              x("Together they have {a} + {y} = {t} stickers."),
              x("Each friend gets {t} / {f} = {per} stickers.")},
             v["per"]);
      break;
    }
    default: {
      const int64_t s = r.Range(1, 12), up = r.Range(5, 20), down = r.Range(2, 15);
      const int64_t noon = up - s, night = noon - down;
      v["s"] = n(-s), v["u"] = n(up), v["d"] = n(down), v["noon"] = n(noon), v["mid"] = n(night);
      finish(x("At dawn the temperature {in the valley|on the mountain|in town} was {s} degrees. "
               "By noon it had risen by {u} degrees, and by midnight it had fallen by {d} degrees "
               "from the noon value. What was the temperature at midnight?"),
             {x("At noon it was {s} + {u} = {noon} degrees."),
              x("At midnight it was {noon} - {d} = {mid} degrees.")},
             v["mid"]);
      break;
    }
  }
  return p;
}

}  // namespace terse::eval::internal
