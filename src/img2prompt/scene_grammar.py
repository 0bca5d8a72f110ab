"""The scenes grammar: Stable-Diffusion-like prompts whose every word the offline renderer can draw.

A scene is one to three subjects (each a Unicode pictograph with a count, a size and a colour), an optional
position, a background, a style and a few modifiers. ``to_prompt`` writes it the way people write SD prompts
("two small red foxes and a bicycle on a beach at sunset, pixel art, highly detailed"); ``parse`` reads it
back exactly, and also reads free text leniently (it picks out the phrases it knows), so the renderer can be
pointed at any prompt. ``random_prompts(n, seed)`` is what the curation stage's ``scenes`` source calls.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass, field

# Subjects: "CODEPOINT noun" pairs; the code point names the pictograph (e.g. 1F98A is FOX FACE), the noun is
# what a prompt calls it. Kept inline so the grammar is identical on every machine and Python version.
_SUBJECT_TABLE = """
1F400 rat; 1F401 mouse; 1F402 ox; 1F403 water buffalo; 1F404 cow; 1F405 tiger; 1F406 leopard; 1F407 rabbit;
1F408 cat; 1F409 dragon; 1F40A crocodile; 1F40B whale; 1F40C snail; 1F40D snake; 1F40E horse; 1F40F ram;
1F410 goat; 1F411 sheep; 1F412 monkey; 1F413 rooster; 1F414 chicken; 1F415 dog; 1F416 pig; 1F417 boar;
1F418 elephant; 1F419 octopus; 1F41A seashell; 1F41C ant; 1F41D honeybee; 1F41E ladybug; 1F41F fish;
1F420 tropical fish; 1F421 blowfish; 1F422 turtle; 1F424 baby chick; 1F426 bird; 1F427 penguin; 1F428 koala;
1F429 poodle; 1F42A camel; 1F42C dolphin; 1F438 frog; 1F439 hamster; 1F43A wolf; 1F43B bear; 1F43C panda;
1F43F chipmunk; 1F981 lion; 1F982 scorpion; 1F983 turkey; 1F984 unicorn; 1F985 eagle; 1F986 duck; 1F987 bat;
1F988 shark; 1F989 owl; 1F98A fox; 1F98B butterfly; 1F98C deer; 1F98D gorilla; 1F98E lizard;
1F98F rhinoceros; 1F990 shrimp; 1F991 squid; 1F992 giraffe; 1F993 zebra; 1F994 hedgehog; 1F995 dinosaur;
1F996 t-rex; 1F997 cricket; 1F998 kangaroo; 1F999 llama; 1F99A peacock; 1F99B hippopotamus; 1F99C parrot;
1F99D raccoon; 1F99E lobster; 1F99F mosquito; 1F9A1 badger; 1F9A2 swan; 1F9A3 mammoth; 1F9A4 dodo;
1F9A5 sloth; 1F9A6 otter; 1F9A7 orangutan; 1F9A8 skunk; 1F9A9 flamingo; 1F9AA oyster; 1F9AB beaver;
1F9AC bison; 1F9AD seal; 1F980 crab; 1F577 spider; 1F54A dove; 1FAB0 fly; 1FAB1 worm; 1FAB2 beetle;
1F332 pine tree; 1F333 oak tree; 1F334 palm tree; 1F335 cactus; 1F337 tulip; 1F338 cherry blossom;
1F339 rose; 1F33A hibiscus; 1F33B sunflower; 1F33F herb; 1F340 four leaf clover; 1F341 maple leaf;
1F344 mushroom; 1F490 bouquet; 1F940 wilted flower; 1FAB4 potted plant; 1FAB7 lotus; 1FAB8 coral;
1FAB6 feather; 1FAB9 bird nest; 1F331 seedling;
1F345 tomato; 1F346 eggplant; 1F347 bunch of grapes; 1F348 melon; 1F349 watermelon; 1F34A tangerine;
1F34B lemon; 1F34C banana; 1F34D pineapple; 1F34E apple; 1F350 pear; 1F351 peach; 1F353 strawberry;
1F354 hamburger; 1F355 slice of pizza; 1F32D hot dog; 1F32E taco; 1F32F burrito; 1F35E loaf of bread;
1F363 sushi roll; 1F366 ice cream cone; 1F369 doughnut; 1F36A cookie; 1F36B chocolate bar; 1F36C candy;
1F36D lollipop; 1F36F honey pot; 1F370 slice of cake; 1F382 birthday cake; 1F37A beer mug;
1F377 wine glass; 1F378 cocktail; 1F379 tropical drink; 1F37C baby bottle; 1F950 croissant; 1F951 avocado;
1F952 cucumber; 1F954 potato; 1F955 carrot; 1F956 baguette; 1F95A egg; 1F95D kiwi; 1F95E stack of pancakes;
1F95F dumpling; 1F960 fortune cookie; 1F965 coconut; 1F966 broccoli; 1F967 pie; 1F968 pretzel;
1F96A sandwich; 1F96D mango; 1F96F bagel; 1F9C0 wedge of cheese; 1F9C1 cupcake; 1F9C4 garlic; 1F9C5 onion;
1F9C7 waffle; 1F9CB bubble tea; 1FAD0 blueberry; 1FAD1 bell pepper; 1FAD2 olive; 1FAD6 teapot;
1F336 chili pepper; 1F330 chestnut; 1F33D ear of corn; 2615 cup of coffee;
1F680 rocket; 1F681 helicopter; 1F682 steam locomotive; 1F684 high-speed train; 1F68C bus; 1F691 ambulance;
1F692 fire engine; 1F693 police car; 1F695 taxi; 1F697 car; 1F699 camper van; 1F69A delivery truck;
1F69C tractor; 1F6A2 ship; 1F6A3 rowboat; 1F6A4 speedboat; 26F5 sailboat; 1F6B2 bicycle; 1F6F4 scooter;
1F6F5 motor scooter; 1F6F6 canoe; 1F6F7 sled; 1F6F8 flying saucer; 1F6F9 skateboard; 1F6FB pickup truck;
1F6E9 airplane; 1F6F0 satellite; 1F3CE racing car; 1F3CD motorcycle; 1F6A1 cable car; 1F6FC roller skate;
1F3E0 house; 1F3E1 cottage; 1F3E2 office building; 1F3E5 hospital; 1F3EB school; 1F3ED factory;
1F3EF pagoda; 1F3F0 castle; 26EA church; 1F54C mosque; 1F6D6 hut; 26FA tent; 26F2 fountain; 1F5FC tower;
1F5FD statue of liberty; 1F5FF moai statue; 1F3A1 ferris wheel; 1F3A0 carousel horse; 1F3AA circus tent;
1F6AA door; 1FA9F window; 1F309 bridge; 1F30B volcano; 26F0 mountain;
1F302 umbrella; 2603 snowman; 1F380 ribbon; 1F381 wrapped present; 1F383 jack-o-lantern;
1F384 christmas tree; 1F388 balloon; 1F3A9 top hat; 1F451 crown; 1F453 pair of glasses; 1F454 necktie;
1F455 t-shirt; 1F457 dress; 1F45C handbag; 1F45F sneaker; 1F460 high heel; 1F462 boot; 1F392 backpack;
1F393 graduation cap; 1F9E2 baseball cap; 1F9E3 scarf; 1F9E4 pair of gloves; 1F9E6 pair of socks;
1F3B8 guitar; 1F3BA trumpet; 1F3BB violin; 1F3B7 saxophone; 1F941 drum; 1FA95 banjo; 1FA97 accordion;
1F3B9 piano keyboard; 1F3A4 microphone; 1F3A7 pair of headphones; 1F4FB radio; 1F4FA television;
1F4F7 camera; 1F3A5 movie camera; 1F4BB laptop; 1F5A5 desktop computer; 1F4F1 mobile phone; 260E telephone;
1F5A8 printer; 1F579 joystick; 1F3AE game controller; 1F4A1 light bulb; 1F526 flashlight; 1F56F candle;
1FA94 oil lamp; 1F50B battery; 1F50C electric plug; 1F50D magnifying glass; 1F52C microscope;
1F52D telescope; 1F52E crystal ball; 1F511 key; 1F512 padlock; 1F514 bell; 1F528 hammer; 1F527 wrench;
1FA9B screwdriver; 1FA93 axe; 1FA9A saw; 1FA9C ladder; 1F9F0 toolbox; 1F9F2 magnet; 1F9ED compass;
1F9EE abacus; 1F9EA test tube; 1F9EF fire extinguisher; 1F9F1 brick; 1F9F3 suitcase; 1F9F8 teddy bear;
1F9F9 broom; 1F9FA basket; 1F9FD sponge; 1F9F6 ball of yarn; 1FA80 yo-yo; 1FA81 kite; 1FA82 parachute;
1FA83 boomerang; 1FA84 magic wand; 1FA86 nesting doll; 1FA91 chair; 1F6CF bed; 1F6CB couch; 1F6C1 bathtub;
1F6BD toilet; 1FA9E mirror; 1FAA3 bucket; 1FAA5 toothbrush; 1F4DA stack of books; 1F4D6 open book;
1F4DC scroll; 1F4E6 cardboard box; 1F4EE mailbox; 1F4F0 newspaper; 1F4CE paperclip; 1F4CF ruler;
1F58B fountain pen; 1F58C paintbrush; 1F58D crayon; 1F3A8 artist palette; 1F5BC framed picture;
1F570 clock; 231B hourglass; 1F48E gemstone; 1F48D ring; 1F4B0 money bag; 1FA99 coin; 1F3C6 trophy;
1F3C5 medal; 1F3AF dartboard; 1F3B2 die; 26BD soccer ball; 26BE baseball; 1F3C0 basketball;
1F3C8 football; 1F3BE tennis racket; 1F3D0 volleyball; 1F94A boxing glove; 1F94F frisbee;
1F3A3 fishing rod; 2693 anchor; 2694 pair of swords; 1F6E1 shield; 1F3F9 archery bow;
2699 gear; 26D3 chain; 1F9E9 puzzle piece; 1F47B ghost; 1F47D alien; 1F47E space invader; 1F480 skull;
1F916 robot; 1F9D9 wizard; 1F9DA fairy; 1F9DB vampire; 1F9DF zombie; 1F9DC mermaid; 1F9DE genie;
1F478 princess; 1F977 ninja; 1F385 santa claus; 1F9B8 superhero;
1F308 rainbow; 2601 cloud; 1F329 storm cloud; 1F32A tornado; 2604 comet; 1F319 crescent moon;
1F31F star; 1F320 shooting star; 1F30E globe; 1FA90 ringed planet; 1F525 fire; 1F4A7 water drop;
1F300 whirlpool; 2744 snowflake; 26A1 lightning bolt; 1F496 heart; 1F4A3 bomb; 1F9CA ice cube
"""

# Irregular plurals; every other noun takes "s" / "es" / "ies" by the usual spelling rules.
_IRREGULAR_PLURALS = {
    "mouse": "mice", "ox": "oxen", "sheep": "sheep", "fish": "fish", "tropical fish": "tropical fish",
    "blowfish": "blowfish", "deer": "deer", "bison": "bison", "shrimp": "shrimp", "squid": "squid",
    "cactus": "cacti", "octopus": "octopuses",
    "rhinoceros": "rhinoceroses", "hippopotamus": "hippopotamuses", "wolf": "wolves", "leaf": "leaves",
    "maple leaf": "maple leaves", "loaf of bread": "loaves of bread", "knife": "knives",
    "scarf": "scarves", "die": "dice", "potato": "potatoes", "tomato": "tomatoes", "volcano": "volcanoes",
    "mango": "mangoes", "snowman": "snowmen", "superhero": "superheroes", "genie": "genies", "mermaid": "mermaids",
}

COUNT_WORDS = {1: "a", 2: "two", 3: "three", 4: "four"}
SIZES = ("tiny", "small", "large", "giant")
COLOURS = {
    "red": (214, 40, 40), "orange": (245, 130, 20), "yellow": (250, 210, 30), "green": (40, 160, 60),
    "blue": (35, 90, 220), "purple": (130, 50, 180), "pink": (245, 120, 170), "golden": (212, 175, 55),
    "silver": (190, 195, 205), "black": (25, 25, 25), "white": (245, 245, 245), "brown": (120, 75, 40),
}
POSITIONS = ("on the left", "on the right", "at the top", "at the bottom", "in the center")
BACKGROUNDS = (
    "on a beach at sunset", "in a forest", "in outer space", "on a snowy mountain", "under the sea",
    "in a desert", "in a city at night", "on a grassy meadow", "in the sky", "on a white background",
    "on a black background", "in a dark cave", "on a wooden table", "in a field of flowers",
)
STYLES = (
    "pixel art", "pencil sketch", "watercolor painting", "black and white photo", "sepia photograph",
    "pop art", "oil painting", "neon glow", "blurry photo", "line art", "mosaic", "digital art",
    "infrared photo", "comic book style",
)
MODIFIERS = (
    "highly detailed", "sharp focus", "soft lighting", "dramatic lighting", "vibrant colors",
    "muted colors", "film grain", "cinematic",
)
MAX_SUBJECTS = 3
_VOWEL_SOUND_EXCEPTIONS = {"unicorn", "yo-yo", "one"}


def _plural(noun: str) -> str:
    if noun in _IRREGULAR_PLURALS:
        return _IRREGULAR_PLURALS[noun]
    head, sep, tail = noun.partition(" of ")
    if sep:  # "slice of pizza" -> "slices of pizza"
        return f"{_plural(head)} of {tail}"
    if noun.endswith(("s", "x", "z", "ch", "sh")):
        return noun + "es"
    if noun.endswith("y") and noun[-2:-1] not in "aeiou":
        return noun[:-1] + "ies"
    return noun + "s"


def _parse_table(text: str) -> dict[str, int]:
    table: dict[str, int] = {}
    for entry in text.replace("\n", " ").split(";"):
        code, _, noun = entry.strip().partition(" ")
        table.setdefault(noun, int(code, 16))
    return table


SUBJECTS: dict[str, int] = _parse_table(_SUBJECT_TABLE)
"""Noun -> Unicode code point of its pictograph."""
PLURALS: dict[str, str] = {noun: _plural(noun) for noun in SUBJECTS}


@dataclass(frozen=True)
class Subject:
    """One kind of thing in the scene: ``count`` copies of one pictograph, optionally resized and tinted."""

    noun: str
    count: int = 1
    size: str | None = None
    colour: str | None = None

    @property
    def codepoint(self) -> int:
        return SUBJECTS[self.noun]

    def phrase(self) -> str:
        words = [w for w in (self.size, self.colour) if w]
        words.append(self.noun if self.count == 1 else PLURALS[self.noun])
        body = " ".join(words)
        return f"{_article(body)} {body}" if self.count == 1 else f"{COUNT_WORDS[self.count]} {body}"


@dataclass(frozen=True)
class Scene:
    """Everything the renderer draws; ``to_prompt`` and ``parse`` convert it to and from text."""

    subjects: tuple[Subject, ...] = ()
    position: str | None = None
    background: str | None = None
    style: str | None = None
    modifiers: tuple[str, ...] = field(default_factory=tuple)


def _article(phrase: str) -> str:
    first = phrase.split(" ", 1)[0]
    vowel = first[0] in "aeiou" and first not in _VOWEL_SOUND_EXCEPTIONS
    return "an" if vowel or first in {"hourglass"} else "a"


def to_prompt(scene: Scene) -> str:
    """Write a scene as an SD-style prompt: the main clause, then the style and modifiers after commas."""
    phrases = [s.phrase() for s in scene.subjects]
    clause = phrases[0] if len(phrases) == 1 else ", ".join(phrases[:-1]) + " and " + phrases[-1]
    clause = " ".join(part for part in (clause, scene.position, scene.background) if part)
    return ", ".join([clause, *([scene.style] if scene.style else []), *scene.modifiers])


def random_scene(rng: random.Random) -> Scene:
    """Draw one scene; probabilities are chosen so most prompts have a style and a background, like SD's."""
    nouns = rng.sample(sorted(SUBJECTS), rng.choice((1, 1, 1, 2, 2, 3)))
    subjects = tuple(
        Subject(
            noun=noun,
            count=rng.choice((1, 1, 1, 2, 3, 4)),
            size=rng.choice((None, None, None, *SIZES)),
            colour=rng.choice((None, None, *COLOURS)) if rng.random() < 0.5 else None,
        )
        for noun in nouns
    )
    return Scene(
        subjects=subjects,
        position=rng.choice(POSITIONS) if rng.random() < 0.3 else None,
        background=rng.choice(BACKGROUNDS) if rng.random() < 0.85 else None,
        style=rng.choice(STYLES) if rng.random() < 0.85 else None,
        modifiers=tuple(rng.sample(MODIFIERS, rng.choice((0, 1, 1, 2)))),
    )


def random_prompts(n: int, seed: int) -> list[str]:
    """``n`` distinct grammar prompts, the same list for the same seed on every machine."""
    rng = random.Random(seed)
    prompts: list[str] = []
    seen: set[str] = set()
    while len(prompts) < n:
        prompt = to_prompt(random_scene(rng))
        if prompt not in seen:
            seen.add(prompt)
            prompts.append(prompt)
    return prompts


def _alternation(words: list[str]) -> str:
    return "|".join(re.escape(w) for w in sorted(words, key=len, reverse=True))


_NOUN_FORMS = {form: noun for noun, plural in PLURALS.items() for form in (plural, noun)}
_SUBJECT_RE = re.compile(
    rf"\b(?:(?P<count>a|an|one|{_alternation(list(COUNT_WORDS.values())[1:])})\s+)?"
    rf"(?:(?P<size>{_alternation(list(SIZES))})\s+)?"
    rf"(?:(?P<colour>{_alternation(list(COLOURS))})\s+)?"
    rf"(?P<noun>{_alternation(list(_NOUN_FORMS))})\b"
)
_COUNT_VALUES = {"a": 1, "an": 1, "one": 1, **{word: n for n, word in COUNT_WORDS.items()}}


def _take(text: str, phrases: tuple[str, ...]) -> tuple[list[tuple[int, str]], str]:
    """Find the known ``phrases`` in ``text`` (longest first) and blank them out so nothing matches twice."""
    found = []
    for phrase in sorted(phrases, key=len, reverse=True):
        for match in re.finditer(rf"(?<![\w-]){re.escape(phrase)}(?![\w-])", text):
            found.append((match.start(), phrase))
            text = text[: match.start()] + " " * len(phrase) + text[match.end() :]
    return sorted(found), text


def parse(prompt: str) -> Scene:
    """Read a prompt into a scene: exact for grammar prompts, a best effort (known phrases only) for others.

    Unknown words are ignored, so free text such as "a photo of two cats on a beach at sunset" still gives
    a drawable scene; a subject named twice keeps its first mention.
    """
    text = " ".join(prompt.lower().split())
    styles, text = _take(text, STYLES)
    modifiers, text = _take(text, MODIFIERS)
    backgrounds, text = _take(text, BACKGROUNDS)
    positions, text = _take(text, POSITIONS)
    subjects: list[Subject] = []
    for match in _SUBJECT_RE.finditer(text):
        noun = _NOUN_FORMS[match["noun"]]
        if any(s.noun == noun for s in subjects) or len(subjects) == MAX_SUBJECTS:
            continue
        is_plural = match["noun"] == PLURALS[noun] and PLURALS[noun] != noun
        count = _COUNT_VALUES[match["count"]] if match["count"] else (2 if is_plural else 1)
        subjects.append(Subject(noun=noun, count=count, size=match["size"], colour=match["colour"]))
    return Scene(
        subjects=tuple(subjects),
        position=positions[0][1] if positions else None,
        background=backgrounds[0][1] if backgrounds else None,
        style=styles[0][1] if styles else None,
        modifiers=tuple(phrase for _, phrase in modifiers),
    )
