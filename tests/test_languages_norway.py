"""The languages people in Norway write to a privacy inbox in (issue 18).

Each language has a lexicon with the editor guide, a profile that names it, and realistic
messages written for it (tests/data/languages_norway.jsonl, written with the lexicons: a check
per language, not a blind measure). A message in a script whose language has no lexicon goes
to a person with its script named, never silently to "no request"."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import pytest

from assistant.understand.intents import SPECIAL_SECTIONS
from assistant.understand.language import detect_language
from assistant.understand.pipeline import understand_text
from assistant.vocabulary import INTENTS

ROOT = Path(__file__).resolve().parents[1]
LANGUAGES = ("pl", "lt", "uk", "ru", "ar", "so", "ti", "tr", "ro", "es")
ROWS = [json.loads(line) for line in
        (ROOT / "tests" / "data" / "languages_norway.jsonl").read_text(encoding="utf-8").splitlines()
        if line.strip()]


@pytest.mark.parametrize("code", LANGUAGES)
def test_each_language_has_a_documented_lexicon_with_the_eight_intents(code: str) -> None:
    path = ROOT / "intents" / f"{code}.toml"
    text = path.read_text(encoding="utf-8")
    assert "HOW TO EDIT" in text and "[possible]" in text
    data = tomllib.loads(text)
    assert set(INTENTS) <= set(data), sorted(set(INTENTS) - set(data))
    assert set(data) <= set(INTENTS) | set(SPECIAL_SECTIONS)
    profiles = tomllib.loads((ROOT / "intents" / "languages.toml").read_text(encoding="utf-8"))
    assert code in profiles and profiles[code]["words"]


@pytest.mark.parametrize("code", LANGUAGES)
def test_each_language_has_requests_and_a_look_alike_written_for_it(code: str) -> None:
    rows = [r for r in ROWS if r["language"] == code]
    assert sum(bool(r["intents"]) for r in rows) >= 3
    assert any(not r["intents"] for r in rows) or code == "ti"


@pytest.mark.parametrize("row", ROWS, ids=[r["id"] for r in ROWS])
def test_realistic_messages_per_language(row: dict) -> None:
    result = understand_text(row["body"], subject=row["subject"])
    assert result.language == row["language"]
    assert set(result.intents) == set(row["intents"]), result.explain()
    if row["intents"]:
        assert result.possible_request


@pytest.mark.parametrize("text,language", [
    ("Dzień dobry, mam pytanie o moje dane osobowe, które macie w systemie.", "pl"),
    ("Здравствуйте, у меня вопрос про мои данные в вашей системе.", "ru"),
    ("Merhaba, kişisel verilerim hakkında bir sorum var.", "tr"),
])
def test_a_request_cue_below_the_threshold_goes_to_triage(text: str, language: str) -> None:
    result = understand_text(text)
    assert result.language == language
    assert not result.intents and result.unclear and result.possible_request
    assert "request cue" in result.triage


@pytest.mark.parametrize("text,script", [
    ("שלום, אני רוצה לדעת איזה מידע יש לכם עליי ולמחוק אותו בבקשה", "Hebrew"),
    ("Здравейте, искам да изтриете личните ми данни от вашата система.", "Cyrillic"),
    ("ሰላም፡ ኣነ ብዛዕባ ኣገልግሎትኩም ሕቶ ኣለኒ፡ ብኽብረትኩም ደውሉለይ", "Ge'ez"),
    ("สวัสดีครับ ผมอยากทราบว่าบริษัทของคุณมีข้อมูลอะไรเกี่ยวกับผมบ้าง", "Thai"),
])
def test_a_script_the_product_cannot_read_goes_to_triage_with_its_name(text: str, script: str) -> None:
    result = understand_text(text)
    assert not result.intents and result.unclear and result.possible_request, result.explain()
    assert script in result.triage


@pytest.mark.parametrize("text,script", [
    ("请删除我的个人数据", "Chinese"),
    ("個人情報を削除してください", "Japanese"),
    ("제 개인정보를 삭제해 주세요", "Korean"),
])
def test_a_short_message_in_a_script_of_few_letters_still_goes_to_triage(text: str, script: str) -> None:
    """Nine Chinese characters are a whole request: a script counts when it is most of the letters."""
    result = understand_text(text)
    assert not result.intents and result.unclear, result.explain()
    assert script in result.triage
    assert result.language == "und", "not the organisation's language, which they did not write in"


@pytest.mark.parametrize("text", [
    "Xin chào, tôi muốn biết công ty lưu những thông tin gì về tôi. Cảm ơn nhiều.",
    "Jó napot! Szeretném tudni, milyen adatokat tárolnak rólam. Köszönöm szépen.",
    "Hei, haluaisin tietää, mitä tietoja teillä on minusta tallennettuna. Kiitos.",
    "Tere, palun kustutage minu andmed teie süsteemist võimalikult kiiresti. Aitäh.",
    "Habari, tafadhali futa taarifa zangu binafsi kutoka kwenye mfumo wenu. Asante sana.",
    "Labdien, lūdzu, izdzēsiet manus personas datus no jūsu sistēmas. Paldies jums.",
])
def test_a_latin_script_language_the_product_does_not_read_goes_to_a_person(text: str) -> None:
    """Vietnamese, Hungarian, Finnish, Estonian, Swahili, Latvian: no profile names them and no
    lexicon reads them, so "no cue found" means nothing: a person looks, and the receipt is in
    English."""
    result = understand_text(text, default_language="nb")
    assert result.possible_request and result.unclear, result.explain()
    assert "does not read" in result.triage and result.language == "und"


@pytest.mark.parametrize("text", [
    "Hei, når kommer pakken min? Jeg bestilte to røykvarslere for en uke siden.",
    "Hej, när kommer mitt paket? Jag beställde en brandfilt förra veckan.",
    "Hi, when will my parcel arrive? I ordered two smoke alarms a week ago.",
    "Wann kommt meine Bestellung? Ich habe vor zwei Wochen zwei Feuerlöscher bestellt.",
    "Bosch S4 Silver 60Ah startbatteri Volvo V70 2012 Thule WingBar Evo Castrol Edge 5W-30",
    "Mvh Tor Olav Kristiansen Skogveien 12 Lillehammer Mobil 91234567",
])
def test_an_order_question_in_a_language_we_read_stays_no_request(text: str) -> None:
    """Names, brands and product models are no language: only lower-case words are weighed."""
    result = understand_text(text)
    assert not result.possible_request, result.explain()


def test_a_receipt_to_someone_whose_language_is_undetermined_is_in_english() -> None:
    from assistant.drafting import reply_language

    assert reply_language("und") == "en"


def test_an_order_in_a_language_with_a_lexicon_is_no_request() -> None:
    for text in ("Здравствуйте, хочу заказать тормозные колодки для Volvo V70 2012. Есть в наличии?",
                 "مرحبا، متى يصل الطلب رقم 4410؟ شكرا"):
        result = understand_text(text)
        assert not result.possible_request, result.explain()


def test_profiles_name_the_scripts_at_once() -> None:
    assert detect_language("Добрий день, будь ласка, видаліть мої дані.")[0] == "uk"
    assert detect_language("Здравствуйте, пожалуйста, удалите мои данные.")[0] == "ru"
    assert detect_language("السلام عليكم، أرجو حذف بياناتي")[0] == "ar"
    assert detect_language("ሰላም፡ በጃኹም ሓበሬታይ ደምስሱ።")[0] == "ti"


# Typed on a phone (no diacritics), inflected verbs, "please"/"I want" frames in each language.
EVERYDAY = [
    ("Dzien dobry, chcialbym wiedziec jakie dane o mnie macie.", {"access"}),
    ("Prosze nie wysylac mi wiecej sms z reklamami.", {"opt_out"}),
    ("Hei, jeg heter Tomasz. Prosze o kopie moich danych. Takk", {"access"}),
    ("Labas, noriu kad istrintumete mano duomenis.", {"erasure"}),
    ("Sveiki, prašau pašalinti mane iš jūsų sąrašo ir ištrinti mano duomenis.", {"erasure"}),
    ("Buna ziua, va rog sa stergeti datele mele personale.", {"erasure"}),
    ("Hola, quiero saber qué datos personales tienen de mí.", {"access"}),
    ("Hola, quiero que borren todos mis datos.", {"erasure"}),
    ("Привіт, видаліть будь ласка мій акаунт і всі мої дані.", {"erasure"}),
    ("Добрый день. Прошу удалить мои персональные данные из вашей базы.", {"erasure"}),
    ("Прошу прекратить присылать мне рекламные SMS.", {"opt_out"}),
    ("مرحبا، أريد أن تحذفوا جميع بياناتي من عندكم.", {"erasure"}),
    ("Merhaba, benimle ilgili hangi bilgileri sakladığınızı öğrenmek istiyorum.", {"access"}),
    ("Merhaba, hesabımı ve tüm verilerimi silmenizi rica ediyorum.", {"erasure"}),
    ("Salaan, waxaan rabaa in aad tirtirtaan xogtayda oo dhan.", {"erasure"}),
    # two requests in one sentence, split at the language's "and"
    ("Dzień dobry, usuńcie moje dane oraz wypiszcie mnie z newslettera.", {"erasure", "opt_out"}),
    ("Здравствуйте, удалите мои данные и больше не присылайте рекламу.", {"erasure", "opt_out"}),
    ("Merhaba, verilerimi silin ve bana artık reklam göndermeyin.", {"erasure", "opt_out"}),
    ("Hola, borren mis datos y dejen de enviarme publicidad.", {"erasure", "opt_out"}),
    # look-alikes: orders, invoices, visits
    ("Dzień dobry, proszę usunąć filtr z mojego zamówienia nr 4431. Dziękuję", set()),
    ("Dzień dobry, czy mogę dostać kopię faktury za marzec?", set()),
    ("Здравствуйте, удалите, пожалуйста, старый счет, он выставлен по ошибке.", set()),
    ("Merhaba, faturamın bir kopyasını gönderebilir misiniz?", set()),
    ("Hola, ¿pueden enviarme una copia de la factura?", set()),
    ("مرحبا، أريد إلغاء الطلب رقم 5521.", set()),
]


@pytest.mark.parametrize("text,intents", EVERYDAY, ids=[f"everyday-{i}" for i in range(len(EVERYDAY))])
def test_everyday_phrasings_in_each_language(text: str, intents: set[str]) -> None:
    result = understand_text(text)
    assert set(result.intents) == intents, result.explain()
    if not intents:
        assert not result.possible_request, result.explain()


def test_a_cyrillic_message_without_a_request_is_named_and_not_triaged() -> None:
    result = understand_text("Добрый день, когда приедет техник для проверки сигнализации?")
    assert result.language == "ru" and not result.possible_request


def test_replies_to_these_requesters_are_in_english_without_a_template() -> None:
    from assistant.drafting import reply_language

    assert {reply_language(code) for code in LANGUAGES} == {"en"}
