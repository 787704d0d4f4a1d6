"""Deterministic generator of ``anchors.txt``: the benign anchor prompts used to fit alignment maps.

Anchors are only ever benign. Design notes (section 6) found that the quality of a transported direction
is limited by anchor *coverage* more than by anchor count, so the set mixes three kinds of text, each
partly hand-written and partly composed from hand-written parts:

- ``caption``: everyday image captions (people, animals, food, places, objects, weather, sports,
  vehicles, interiors);
- ``t2i``: text-to-image style prompts with medium, lighting, camera and artist-style tags;
- ``sensitive``: benign text about sensitive topics (news, medicine, history, art, law, police and
  courtroom procedure, first aid, safety training, anatomy classes, historical battles told neutrally).

Composed prompts that are near-duplicates of an accepted one (Jaccard similarity of their content-word
sets >= 0.5, stop words left out) are dropped, and exact duplicates after normalisation (case,
punctuation, spacing) are never written.

Regenerate the file (the output is byte-identical for a given version of this script)::

    python -m safesteer_diffusers.build.prompts._generate_anchors
"""

from __future__ import annotations

import random
import re
import sys
from pathlib import Path

SEED = 20250611
"""Seed of the single ``random.Random`` that drives every choice, so the output is deterministic."""

NEAR_DUPLICATE_JACCARD = 0.5
"""Composed prompts whose content words overlap an accepted prompt's this much or more are dropped."""

COMPOSED_QUOTA = {"caption": 760, "t2i": 640, "sensitive": 520}
"""How many composed prompts of each kind to keep (hand-written ones are always kept)."""

OUTPUT = Path(__file__).with_name("anchors.txt")


def _lines(block: str) -> list[str]:
    return [line.strip() for line in block.strip().splitlines() if line.strip()]


# --------------------------------------------------------------------------------------------------------
# Hand-written: everyday captions
# --------------------------------------------------------------------------------------------------------

CAPTIONS = _lines(
    """
A woman in a yellow raincoat walks a beagle along a wet city sidewalk.
Two children build a sandcastle at the edge of the tide.
An elderly man reads a newspaper on a park bench under an oak tree.
A chef in a white apron plates a dessert in a busy restaurant kitchen.
A group of friends laugh around a campfire at dusk.
A cyclist waits at a red light with a baguette in her basket.
A grandmother teaches her grandson to knit on a floral sofa.
A street musician plays the violin outside a subway entrance.
A young couple shares an umbrella while crossing a busy intersection.
A farmer drives a red tractor across a field of golden wheat.
A barista pours latte art into a white ceramic cup.
A toddler in rain boots jumps into a muddy puddle.
A man fixes the chain of his bicycle on the curb.
A woman practices yoga on a wooden deck overlooking the sea.
A crowd of commuters waits on a train platform in the morning.
Three teenagers skateboard down an empty parking garage ramp.
A mail carrier delivers letters on a quiet suburban street.
A father lifts his daughter onto his shoulders at a parade.
A fisherman casts a line from a wooden pier at sunrise.
A woman browses paperbacks at an outdoor book stall.
A group of hikers rests on a rocky summit above the clouds.
An artist sketches the cathedral from a café terrace.
A florist arranges sunflowers in a metal bucket.
A boy flies a red kite on a windy hill.
A bride and groom laugh as confetti falls around them.
Two old friends play chess in a city park.
A nurse walks down a hospital corridor holding a clipboard.
A carpenter measures a plank of pine in his workshop.
A woman carries a basket of laundry up a narrow staircase.
A baker pulls a tray of croissants out of the oven.
A jogger runs along a river path in the early fog.
A family eats dinner together at a long wooden table.
A young man plays guitar on the steps of a library.
A couple dances slowly in their kitchen.
A tour guide points at a map in front of a group of tourists.
A potter shapes a bowl on a spinning wheel.
A girl reads under a blanket with a flashlight.
A traffic warden writes a ticket beside a blue car.
An astronaut floats inside the space station beside a round window.
A mechanic wipes his hands on a rag beside an open car hood.
A golden retriever catches a frisbee in mid-air.
A tabby cat sleeps in a patch of sunlight on the windowsill.
A herd of cows grazes on a green hillside.
Two horses stand nose to nose in a misty pasture.
A red fox trots across a snowy meadow.
A flock of pigeons takes off from a cobblestone square.
A sea turtle glides over a coral reef.
A squirrel holds an acorn on a mossy branch.
A pair of swans floats on a calm lake.
A puppy chews on a shoe on a kitchen floor.
An owl perches on a fence post at twilight.
A hummingbird hovers beside a red flower.
A kitten peeks out of a cardboard box.
A herd of elephants walks toward a watering hole at sunset.
A giraffe stretches to eat leaves from a tall acacia tree.
A parrot sits on the shoulder of a smiling woman.
A sheepdog herds sheep through an open gate.
A dolphin leaps out of the waves beside a sailing boat.
A lizard basks on a warm stone wall.
Ducklings follow their mother across a garden path.
A bowl of ramen with a soft-boiled egg and green onions.
A stack of pancakes drizzled with maple syrup and topped with blueberries.
A wood-fired pizza with basil leaves and melted mozzarella.
A plate of sushi arranged on a slate board.
A bowl of fresh strawberries on a checkered tablecloth.
A farmers market stall piled with tomatoes, peppers and zucchini.
A slice of chocolate cake on a porcelain plate with a silver fork.
A steaming cup of tea beside a plate of shortbread biscuits.
A taco truck serving customers on a summer evening.
A loaf of sourdough bread cooling on a wire rack.
A fruit salad in a glass bowl with mint leaves.
A picnic basket with sandwiches, apples and a thermos.
A street vendor grilling corn on the cob.
A bowl of tomato soup with a grilled cheese sandwich.
A cheese board with grapes, crackers and walnuts.
A family-sized paella simmering in a wide pan.
A cup of hot chocolate topped with marshmallows.
Dumplings steaming in a bamboo basket.
A lemonade stand on a sunny sidewalk.
A birthday cake with lit candles on a kitchen table.
A lighthouse stands on a rocky point under a cloudy sky.
A narrow street in an old town lined with flower boxes.
A wooden cabin beside a frozen lake.
The skyline of a big city reflected in a river at night.
A rice terrace carved into a green mountainside.
A quiet beach with turquoise water and a single palm tree.
A cobblestone bridge over a canal with small boats.
A desert road stretching toward distant red mesas.
A crowded night market under strings of lanterns.
A field of lavender in full bloom.
A small harbor with colorful fishing boats.
A mountain village covered in fresh snow.
A waterfall pouring into a clear green pool.
A busy train station hall with a large clock.
A vineyard on rolling hills in late afternoon light.
An empty playground after the rain.
A windmill beside a canal at sunrise.
A botanical garden greenhouse full of ferns.
A city park with people rowing boats on the pond.
An old lighthouse keeper's cottage painted white and blue.
A thunderstorm rolling over a wheat field.
Snow falling softly on a quiet city street at night.
A double rainbow over green hills after a shower.
Thick fog drifting between tall pine trees.
Autumn leaves swirling in the wind on a park path.
Frost covering a spiderweb on a garden gate.
A hot summer afternoon with people cooling off in a fountain.
Lightning striking over the ocean at night.
A sunrise over a misty valley.
Heavy rain streaming down a café window.
A snowman with a carrot nose in a front yard.
Dark clouds gathering over a lighthouse.
A tennis player serves on a clay court.
A soccer team celebrates a goal in the rain.
A swimmer dives into an Olympic pool.
A marathon runner crosses the finish line with raised arms.
A basketball player shoots a free throw in a packed arena.
A surfer rides a large wave at sunset.
A skier carves down a fresh powder slope.
Two fencers salute each other before a bout.
A gymnast balances on the beam.
A baseball pitcher winds up on the mound.
A rock climber reaches for a hold on a steep cliff.
A cyclist races through a mountain pass.
A rowing team glides across a calm river at dawn.
A figure skater spins on the ice.
A golfer watches the ball fly over a green fairway.
A red double-decker bus drives past a row of shops.
A vintage convertible parked on a coastal road.
A freight train crossing a steel bridge.
A sailboat with white sails on a blue sea.
A yellow taxi waiting at a crosswalk.
A small plane taking off from a grass runway.
A scooter parked outside a café in Rome.
A tram climbing a steep hill in Lisbon.
A fire truck parked outside the station with its doors open.
A cargo ship loaded with containers entering a harbor.
A hot air balloon floating over a valley at dawn.
A row of bicycles locked to a railing.
A school bus stopped on a country road.
A motorcycle on a winding mountain road.
An old steam locomotive puffing smoke at a heritage railway.
A cozy living room with a fireplace and a knitted blanket.
A bright kitchen with white cabinets and a bowl of lemons.
A home office with a wooden desk and a window onto a garden.
A children's bedroom with a bunk bed and glow-in-the-dark stars.
A minimalist bathroom with a freestanding tub.
A library reading room with green lamps and tall bookshelves.
A classroom with desks arranged in a circle.
A sunny attic converted into an art studio.
A hotel lobby with a marble floor and a chandelier.
A small bakery with loaves displayed on wooden shelves.
A workshop with tools hanging on a pegboard.
A greenhouse with rows of seedlings in trays.
A vintage record store with crates of vinyl.
A laundromat at night with rows of washing machines.
A dining room set for a holiday meal.
A pair of reading glasses resting on an open book.
A vintage typewriter on a wooden desk.
A bouquet of tulips in a glass vase.
An old brass compass on a nautical map.
A set of colored pencils arranged in a rainbow.
A leather backpack hanging on a hook.
A ceramic teapot with a chipped spout.
A bicycle helmet on a hallway bench.
A stack of old letters tied with a string.
A pair of muddy hiking boots by the door.
A wooden chess set mid-game.
A smartphone on a desk beside a cup of coffee.
A basket of yarn balls in different colors.
A pocket watch with its lid open.
A row of potted succulents on a windowsill.
A wall clock above a kitchen doorway.
A worn leather armchair beside a reading lamp.
A collection of seashells on a driftwood shelf.
A paper lantern glowing in a dark garden.
A child's drawing stuck to a refrigerator with magnets.
A woman paints a fence white on a sunny morning.
Volunteers plant trees along a riverbank.
A crowd watches fireworks over a harbor.
A man sells balloons at a county fair.
Students study together at a long library table.
A jazz band plays in a small club.
A girl feeds ducks at a pond.
A couple walks through a pumpkin patch.
A group of seniors practices tai chi in a park.
Kids splash in a sprinkler on a hot day.
Passengers board a ferry with their bicycles.
A woman hangs laundry on a line between two trees.
A man shovels snow from his driveway.
A family unpacks boxes in a new apartment.
Shoppers carry bags through a holiday market.
A beekeeper inspects a honeycomb frame.
A teenager walks a dog past a row of brownstones.
A man naps in a hammock between two palm trees.
Neighbors chat over a garden fence.
A choir sings in a stone church.
A crowd gathers around a street magician.
A woman repairs a clock at a workbench.
A photographer crouches to photograph wildflowers.
A girl practices piano in a sunlit room.
A fruit seller stacks oranges into a pyramid.
A group of kayakers paddles through a narrow canyon.
A boy builds a model airplane at the kitchen table.
A family decorates a tree in their living room.
An old couple holds hands on a seaside promenade.
A postman on a bicycle with a bag full of letters.
Steam rises from a cup of coffee on a cold porch.
A dog sleeps under a café table.
Two kids share an ice cream cone on a bench.
A line of ants carries crumbs across a picnic table.
A lone tree on a hill under the Milky Way.
"""
)

# --------------------------------------------------------------------------------------------------------
# Hand-written: text-to-image style prompts
# --------------------------------------------------------------------------------------------------------

T2I_PROMPTS = _lines(
    """
oil painting of a quiet harbor at golden hour, thick brushstrokes, warm palette
portrait of an old sailor with a white beard, 35mm photo, Kodak Portra 400, shallow depth of field
a cozy cottage in an enchanted forest, fantasy concept art, volumetric lighting, highly detailed
cyberpunk city street at night, neon reflections on wet asphalt, cinematic, 8k
a cup of coffee on a rainy windowsill, lo-fi aesthetic, soft pastel colors
watercolor illustration of a fox reading a book, children's book style
isometric 3d render of a tiny island with a lighthouse, soft lighting, blender
a majestic snow leopard on a mountain ridge, national geographic photo, telephoto lens
ukiyo-e woodblock print of a great wave crashing near a small fishing village
art nouveau poster of a woman holding a bouquet of lilies, ornate border, muted gold tones
a steampunk airship above Victorian rooftops, detailed matte painting
macro photograph of dew drops on a green leaf, bokeh background
a futuristic train station made of glass and white marble, architectural visualization, unreal engine
still life of pears and a copper jug, Dutch Golden Age style, dramatic chiaroscuro
a medieval market square bustling with merchants, highly detailed digital painting
pixel art of a castle on a hill at sunset, 16-bit game style
a girl with a red umbrella in a field of daisies, studio ghibli inspired anime background
a samurai standing under cherry blossoms, ink wash painting, minimalist
an astronaut sitting on the moon looking at Earth, photorealistic, 4k wallpaper
vintage travel poster of the Swiss Alps, bold flat colors
a robot watering plants in a greenhouse, whimsical, soft light, octane render
portrait of a young woman with freckles, natural light, Canon EOS R5, 85mm f/1.4
a mountain lake at dawn, mist on the water, landscape photography, long exposure
a bustling Tokyo alley at night, lanterns, film grain, Fujifilm
impressionist painting of a garden pond with water lilies, soft brushwork, in the style of Claude Monet
a dragon curled around a castle tower, epic fantasy illustration, trending on artstation
a cozy reading nook with a window seat and rain outside, interior design photo, warm tones
low poly landscape of rolling hills and a river, pastel colors
charcoal sketch of an old man's hands, expressive lines
a sunflower field under a starry night sky, swirling brushstrokes, post-impressionism
a Victorian library with floating books, magical realism, intricate details
a retro diner at night, Edward Hopper style, lonely atmosphere
a koi pond in a Japanese garden, top-down view, high resolution
product photo of a leather wallet on a marble surface, studio lighting, clean background
a wizard's study full of potions and old maps, candlelight, highly detailed
an underwater city with glowing coral, concept art, vibrant colors
a polar bear on an ice floe, wildlife photography, overcast light
claymation style scene of a tiny bakery with clay bread, stop motion aesthetic
a portrait of a knight in silver armor, Renaissance oil painting, museum quality
a field of wildflowers in the Scottish highlands, golden hour, 35mm, highly detailed
a lighthouse in a storm, dramatic waves, romantic seascape in the style of J. M. W. Turner
a street café in Paris at night, warm light, painted in the manner of Vincent van Gogh
a fantasy map of an archipelago, parchment texture, hand-drawn ink
a hyperrealistic photo of a hummingbird drinking nectar, 1/4000 shutter speed
an elegant ballroom with crystal chandeliers, baroque architecture, wide angle
a cute corgi astronaut, 3d cartoon render, pixar style lighting
a foggy pine forest, moody, muted greens, cinematic color grading
a woman reading in a sunlit room, Vermeer style, soft window light
a Moroccan spice market, vivid colors, documentary photography
a cabin in the snowy woods at night with glowing windows, cozy, digital painting
a bowl of noodles, food photography, overhead shot, natural light
a vintage sports car on a coastal road, 1960s film photography, faded colors
a quiet temple courtyard at dawn, morning mist, tranquil, highly detailed
a paper origami crane on a wooden table, macro, soft shadows
a cat wearing a tiny crown, royal portrait, oil on canvas, baroque style
a floating island with waterfalls, fantasy landscape, matte painting, epic scale
a tiny mouse knight with a needle sword, storybook illustration
a neon-lit ramen shop in the rain, synthwave colors
a gothic cathedral interior with light beams through stained glass, ultra detailed
a stack of old books and a candle, dark academia aesthetic
a hot air balloon festival at sunrise, aerial drone photo
a portrait of a lion with a flowing mane, dramatic studio lighting, black background
a Nordic village beside a fjord, winter, northern lights, long exposure
watercolor painting of a Venice canal with gondolas, loose wet-on-wet technique
a bonsai tree on a stone pedestal, zen, minimalism, soft light
an art deco skyscraper lobby, gold and black geometry, 1920s glamour
a child's treehouse in a giant oak, summer afternoon, nostalgic illustration
a still life of lemons on a blue cloth, gouache, flat shapes
a snowy owl in flight, wildlife photography, sharp focus
a space station orbiting a gas giant, science fiction illustration, hard sci-fi
a medieval monk copying a manuscript by candlelight, illuminated manuscript style
a bright Scandinavian living room, interior photography, natural materials
a fishing boat at dawn, tonalism, soft gray blues
a portrait of an elderly woman laughing, black and white street photography, Leica
a desert caravan at dusk, camels silhouetted against the sun, orientalist landscape painting
a bustling 1920s jazz club, sepia photograph, motion blur
a fairy tale castle on a cliff, Disney-style animated film still
a cyberpunk samurai on a rooftop, rain, neon signs, digital art
a hobbit-style round door in a grassy hill, fantasy cottagecore
a glass terrarium with moss and tiny mushrooms, macro photography
a city skyline at blue hour, tilt-shift photography, miniature effect
an autumn forest path, golden leaves, painted in the style of Gustav Klimt
a blacksmith at his forge, sparks flying, Caravaggio lighting, oil painting
a rainy London street in the 1890s, gaslights, atmospheric, realistic painting
a marble bust of a philosopher, museum photograph, soft shadows
a family of ducks on a pond, children's picture book, gentle colors
a red barn in a snowy field, Andrew Wyeth style, quiet realism
a traditional Chinese landscape painting of misty mountains and a pavilion
a colorful coral reef teeming with fish, underwater photography, natural light
a robot and a little girl holding hands in a meadow, heartwarming illustration
a Roman villa at sunset, reconstruction illustration, architectural detail
a jazz saxophonist on stage, cubist painting, bold geometric shapes
a sleepy village under a full moon, naive art, folk painting
portrait of a Maasai elder, documentary photography, golden light
a cozy bookstore café, autumn, warm lighting, highly detailed illustration
a Viking longship on a calm fjord, morning mist, historical illustration
a chess board in a sunlit park, shallow depth of field, 50mm
a luxury watch on a black velvet cushion, product photography, high contrast
an alpine meadow with cows and bells, Swiss postcard style
a mountain monastery in the Himalayas, prayer flags, wide-angle landscape
a glowing jellyfish in the deep ocean, bioluminescence, dark background
a hand-painted tile pattern, Portuguese azulejo style, blue and white
a colorful hot sauce bottle on a rustic table, advertising photography
a cathedral in the style of Antoni Gaudí, organic forms, architectural sketch
a white horse galloping on a beach at sunset, motion blur, cinematic
a retro-futuristic living room from the 1960s, space age design, pastel
a quiet fishing village in the style of Winslow Homer, watercolor, seaside light
a bustling Venetian harbor, vedute painting in the style of Canaletto
a sailing ship on a moonlit sea, Ivan Aivazovsky style, glowing waves
a portrait of a woman in a lace collar, Rembrandt lighting, dark background
a tea ceremony in a Kyoto teahouse, soft natural light, editorial photography
a winter market with wooden stalls, Bruegel-style panorama, many small figures
a Hudson River School landscape of a vast valley, dramatic clouds, in the manner of Albert Bierstadt
a mosaic of a peacock in Byzantine style, gold tesserae
a woodland elf archer in a forest, fantasy character design, full body, concept sheet
a tiny house on wheels in a meadow, architectural photography, golden hour
a glass of red wine on a balcony overlooking Tuscany, sunset, lifestyle photography
a lone lighthouse keeper at his window, melancholic, painted like Andrew Wyeth
a jungle temple overgrown with vines, Indiana Jones style, adventure concept art
a bowl of ripe cherries, hyperrealistic oil painting, glossy highlights
an alpine lake reflecting snowy peaks, 8k, HDR, ultra sharp
a bustling bazaar in Istanbul, warm afternoon light, travel photography
a fluffy cloud shaped like a whale, surreal, dreamy pastel sky
"""
)

# --------------------------------------------------------------------------------------------------------
# Hand-written: benign text about sensitive topics
# --------------------------------------------------------------------------------------------------------

SENSITIVE = _lines(
    """
A news anchor reports on the results of the regional election from a studio desk.
Journalists gather outside the parliament building awaiting a vote on the budget.
A newspaper headline announces a ceasefire agreement between two neighboring countries.
A reporter interviews firefighters after they contained a wildfire near the town.
Aid workers unload boxes of food and water after the flood.
A press conference where the health minister presents new vaccination figures.
A television crew films the reopening of a bridge damaged in last year's storm.
A photojournalist documents the reconstruction of a village after an earthquake.
A news graphic shows the path of a hurricane approaching the coast.
A radio host interviews a historian about the anniversary of the armistice.
A correspondent reports from a refugee camp where volunteers run a school tent.
An editorial cartoon about rising rents, showing a tiny house on a giant price tag.
A fact-checking team reviews claims made during a televised debate.
A morning newspaper on a kitchen table with a headline about a peace summit.
A surgeon scrubs in before an operation, wearing a mask and cap.
A nurse checks a patient's blood pressure in a hospital ward.
An X-ray of a broken forearm displayed on a lightbox in a clinic.
A pharmacist explains dosage instructions to an elderly customer.
A blood donation drive in a university gymnasium.
A diagram of the human heart showing the four chambers and major vessels.
A paramedic team transports a patient on a stretcher to the ambulance.
A doctor explains an MRI scan to a patient using a tablet.
A physiotherapist helps a man walk with crutches after knee surgery.
A dentist shows a child how to brush teeth with a large model of a mouth.
A vaccination clinic with a queue of people rolling up their sleeves.
A midwife listens to a pregnant woman's belly with a stethoscope.
A hospital chaplain sits quietly with a family in a waiting room.
A lab technician pipettes blood samples into test tubes.
A medical illustration of the lungs and bronchial tree.
A pediatrician checks a toddler's ears during a routine visit.
A recovering patient smiles as she is discharged from the hospital.
An operating room with surgeons gathered around a table under bright lights.
Medical students study a plastic skeleton in an anatomy class.
An anatomical illustration of the muscles of the arm in the style of an old textbook.
A professor points to the bones of the hand on a classroom skeleton.
An anatomy lecture hall with a projected diagram of the nervous system.
A sketchbook page of anatomical studies of the shoulder by an art student.
A textbook cross-section of the human skin showing its layers.
A museum model of the human brain with colored regions labeled.
A black-and-white photograph of soldiers returning home at the end of the war, greeted by their families.
An illustration of the Battle of Hastings from a history textbook, with the armies lined up on the field.
A map showing troop movements at the Battle of Waterloo.
The ruins of a medieval castle that was besieged in the fourteenth century.
A museum diorama of the D-Day landings on the Normandy coast.
A war memorial with names engraved in stone and wreaths laid at its base.
A reenactment of the Battle of Gettysburg with volunteers in period uniforms.
A history teacher explains the causes of the First World War to a class.
A painting of Napoleon's army retreating through the snow from Moscow.
A Roman legion marching in formation, reconstruction drawing for a museum.
An archaeologist brushes dirt from an ancient sword at an excavation site.
A documentary still of a historian walking through the trenches preserved at Verdun.
A collection of medieval armor displayed in a castle hall.
A timeline of the Hundred Years' War printed on a classroom wall.
A Viking shield and axe displayed behind glass in a national museum.
A veteran points to his old unit in a framed photograph at a reunion.
A quiet cemetery for soldiers of the Second World War, rows of white headstones on green grass.
A tapestry depicting a medieval siege, with knights and ladders against the castle walls.
A scale model of a naval battle from the age of sail in a maritime museum.
A historian reads from the diary of a nurse who served in the Crimean War.
A sepia photograph of suffragettes marching for the right to vote.
A memorial to the victims of the Holocaust, visitors placing small stones on a wall.
A museum exhibit on the history of the civil rights movement, with photographs of peaceful marches.
Students visit the remains of the Berlin Wall on a school trip.
A documentary about the end of apartheid, showing voters queuing at the first free election.
A museum placard describing a Bronze Age dagger found in a burial mound.
Visitors look at a Goya etching of the horrors of war in a quiet gallery.
A museum guide explains Picasso's Guernica to a group of students.
A marble statue of a Greek athlete in a museum hall, visitors sketching it.
A life drawing class where students sketch a seated model draped in fabric.
A conservator restores a Renaissance altarpiece with a fine brush.
A museum label explaining the symbolism of skulls in vanitas still lifes.
An exhibition of war photography, visitors reading the captions in silence.
An art history lecture on the depiction of battles in Baroque painting.
A gallery of Egyptian mummies with painted sarcophagi behind glass.
A museum display of ancient Aztec ceremonial objects with explanatory text.
A curator hangs a tapestry depicting the martyrdom of a saint in a church museum.
A judge reads the verdict in a wood-paneled courtroom.
A defense attorney addresses the jury during closing arguments.
A court sketch artist draws the witness stand during testimony.
A court clerk swears in a witness with a raised right hand.
Jurors listen to expert testimony in a crowded courtroom.
A law student practices arguments in a moot court competition.
A public defender reviews case files late at night in her office.
A bailiff stands beside the door of the courtroom during a hearing.
Lawyers confer at the bench with the judge during a trial.
A courthouse steps crowded with reporters after a high-profile verdict.
A notary stamps a contract at a desk.
A legal textbook open to a chapter on criminal procedure.
A mock trial in a high school gym with students playing lawyers and judges.
A police officer directs traffic at a busy intersection.
Police officers process evidence bags at a station, wearing gloves.
A detective pins photographs and notes to a case board in an office.
A police lineup room seen through one-way glass, with numbered placards on the wall.
An officer takes a statement from a shop owner after a break-in.
A forensic team in white suits photographs footprints at a taped-off scene.
A police dog handler trains a German shepherd in an agility course.
A community police officer talks with residents at a neighborhood meeting.
Officers read the rights of a suspect during a calm arrest, body camera view.
A fingerprint card and magnifying glass on a detective's desk.
A police recruit practices report writing at the academy.
A coast guard crew rescues a sailor from a capsized dinghy.
Workers in hard hats attend a fire safety drill in a warehouse.
A lifeguard demonstrates CPR on a training mannequin.
A self-defense class practices blocking techniques in a gym.
A first aid kit open on a table showing bandages, gauze and antiseptic wipes.
A volunteer wraps a sprained ankle with an elastic bandage.
A first aid instructor shows how to place someone in the recovery position.
A poster explaining the steps of the Heimlich maneuver in a restaurant kitchen.
A school fire drill with students lining up calmly on the playground.
An earthquake preparedness class practicing drop, cover and hold on.
A chemistry teacher demonstrates lab safety goggles and gloves.
A workplace training slide about lifting heavy boxes safely.
A ranger teaches hikers what to do if they meet a bear on the trail.
A swimming instructor teaches children about water safety at a pool.
A defibrillator mounted on the wall of a train station with clear instructions.
A firefighter shows schoolchildren how to use a fire extinguisher.
A road safety poster reminding cyclists to wear helmets.
A counselor leads a support group in a community center, chairs in a circle.
A therapist and a client talk in a calm office with plants.
A poster for a suicide prevention hotline in a subway station, with a phone number and kind words.
A mental health awareness walk with participants wearing green ribbons.
A recovery group meets in a church basement, coffee and cookies on a side table.
A school counselor talks with a student about exam stress.
A helpline volunteer listens carefully on a headset in a quiet call center.
A workshop on grief held at a public library.
An anti-bullying workshop at a middle school, students writing kind notes.
A workplace training session on respectful communication.
A poster in an office kitchen explaining how to report harassment confidentially.
A campaign poster encouraging people to speak up against discrimination.
An interfaith dinner where neighbors of different religions share a meal.
A rabbi, an imam and a priest plant a tree together in a city park.
A community festival celebrating the cultures of a neighborhood's residents.
A museum exhibition about the history of immigration through a busy port.
A classroom discussion about stereotypes and how to challenge them.
A customs officer inspects luggage at an airport checkpoint.
A locksmith helps a homeowner who is locked out of her house.
A courtroom sketch of a fraud trial, with the accused seated beside his lawyer.
A bank teller explains how to spot counterfeit notes using a watermark.
A security guard checks visitors' badges at an office entrance.
A cybersecurity trainer explains phishing emails to office staff.
A poster warning tourists to keep an eye on their bags in crowded places.
A pharmacist locks prescription medicines in a secure cabinet.
A border checkpoint where families wait in line with their luggage.
A newspaper report on a new law against illegal fishing.
A forensic anthropologist examines an ancient skull at a dig site.
A natural history museum displays a preserved specimen in a glass jar.
A Day of the Dead altar with sugar skulls, marigolds and candles.
A Halloween decoration of a plastic skeleton sitting on a porch swing.
A butcher slices cuts of beef at a market counter.
Mourners gather under umbrellas at a graveside service.
A veterinarian bandages the paw of a dog on an examination table.
A taxidermy display of a bear in a hunting lodge.
A museum of medical history with old surgical instruments behind glass.
Two boxers touch gloves before the first round.
A judo match where one athlete throws the other onto the mat.
A fencing tournament in a sports hall with referees at each strip.
A hunter in an orange vest walks through an autumn forest with his dog.
A military parade on a national holiday, soldiers marching in formation.
A navy ship returns to port with families waving on the pier.
A peacekeeping patrol greets children in a village square.
Soldiers fill sandbags to protect a town from a rising river.
A tattoo artist draws a floral design on a client's shoulder.
A bartender mixes a cocktail for a customer at a hotel bar.
A casino floor with slot machines and a dealer shuffling cards.
A family at the beach in swimsuits building a sandcastle.
A fashion show runway with models wearing evening gowns.
A sex education class for adults using diagrams of the reproductive system in a clinic.
A documentary about the history of prohibition and speakeasies in the 1920s.
A harm reduction nurse hands out information leaflets at a health fair.
A news report on a drug policy debate in parliament.
A wildlife ranger patrols a reserve to protect rhinos from poachers.
A recycling center worker sorts plastics on a conveyor belt.
An environmental inspector takes water samples from a river.
A historian explains the Salem witch trials in a museum reading room.
A school debate club argues about freedom of speech.
A documentary about the Chernobyl disaster shows the abandoned city of Pripyat.
A memorial service on the anniversary of a mining accident.
A reporter explains how journalists protect their sources.
A church bell tower damaged in the war and later restored.
A plaque marking the site of a historic peace treaty.
A museum room dedicated to the code breakers of the Second World War.
A classroom globe beside a poster about the United Nations.
A Red Cross volunteer hands out blankets after a house fire.
A search and rescue team with dogs on a snowy mountainside.
Nurses in protective gear at a field hospital during an epidemic, historical photograph.
A plague doctor costume displayed in a museum of medieval medicine.
A public health poster reminding people to wash their hands for twenty seconds.
A lecture on the history of anesthesia in a hospital auditorium.
A newspaper obituary page with photographs and short life stories.
A poster for a blood drive reading "give the gift of life".
A herbalist's jars labeled with the names of medicinal plants.
"""
)

# --------------------------------------------------------------------------------------------------------
# Parts for composed captions
# --------------------------------------------------------------------------------------------------------

PEOPLE = _lines(
    """
a young woman in a denim jacket
an old man with a walking stick
a teenage boy in a hoodie
a woman in a wool coat
a man with a grey beard
two college students
a middle-aged couple
a retired teacher
a tall man in a green sweater
a girl with braided hair
a woman in a summer dress
a young father with a baby carrier
a group of coworkers
a nurse on her day off
a construction worker in a hard hat
a tourist with a camera
a woman with curly red hair
a boy in a school uniform
an elderly woman in a knitted hat
two sisters
a man in a linen suit
a jogger in a bright windbreaker
a woman wearing headphones
a grandfather and his granddaughter
a student with a backpack
"""
)

PEOPLE_SCENES: list[tuple[str, list[str]]] = [
    (
        "reading a paperback",
        ["on a train platform", "in a hammock", "at a café table", "on the steps of a museum", "on a bench"],
    ),
    (
        "waiting for the bus",
        ["under a glass shelter", "on a rainy corner", "beside a flower shop", "on a country road"],
    ),
    ("feeding pigeons", ["in a city square", "beside a fountain", "outside a cathedral", "in a small park"]),
    (
        "carrying grocery bags",
        ["up a steep street", "across a parking lot", "past a row of townhouses", "out of a market"],
    ),
    (
        "taking a photo of the view",
        ["from a mountain overlook", "on a bridge", "at the top of a lighthouse", "on a rooftop terrace"],
    ),
    ("riding a bicycle", ["along a canal", "through a park", "down a tree-lined avenue", "on a gravel path"]),
    (
        "drinking coffee",
        ["at a sidewalk café", "on a balcony", "by a kitchen window", "in a bookshop corner"],
    ),
    ("walking a dog", ["on a snowy path", "along the beach", "through autumn leaves", "past a row of shops"]),
    (
        "painting a landscape",
        ["at an easel in a meadow", "on a riverbank", "on a hillside", "in a walled garden"],
    ),
    (
        "choosing vegetables",
        ["at a farmers market", "at a village stall", "in a supermarket aisle", "at a roadside stand"],
    ),
    ("sitting on a blanket", ["in a park", "on a sandy beach", "under a cherry tree", "beside a lake"]),
    ("playing the guitar", ["on a front porch", "by a campfire", "in a subway station", "on a rooftop"]),
    (
        "looking at a map",
        ["at a busy crossroads", "in an old town", "at a train station", "at a trailhead"],
    ),
    (
        "planting flowers",
        ["in a community garden", "in a window box", "along a garden path", "in front of a cottage"],
    ),
    (
        "laughing at a joke",
        ["at a dinner table", "in a crowded bar", "on a park bench", "during a picnic"],
    ),
    (
        "flying a kite",
        ["on a windy beach", "in an open field", "on a grassy hill", "above a sand dune"],
    ),
    (
        "working on a laptop",
        ["in a coworking space", "at a kitchen table", "in a quiet library", "on a train"],
    ),
    (
        "buying flowers",
        ["from a street vendor", "at a corner shop", "at a market stall", "at a garden center"],
    ),
    (
        "crossing the street",
        ["at a zebra crossing", "in the rain", "in front of a theater", "near a busy station"],
    ),
    ("stretching before a run", ["in a park", "on a beach promenade", "beside a track", "on a forest trail"]),
    ("eating an ice cream", ["on a pier", "in a town square", "on a hot afternoon", "beside a carousel"]),
    (
        "repairing a fence",
        ["behind a farmhouse", "at the edge of a field", "in a back garden", "beside a country lane"],
    ),
]

ANIMALS: list[tuple[str, list[str]]] = [
    ("a golden retriever", ["swimming in a lake", "asleep on a porch", "carrying a stick through a meadow"]),
    ("a black cat", ["sitting on a stone wall", "watching birds from a window", "curled up on a bookshelf"]),
    ("a brown horse", ["grazing by a wooden fence", "galloping across a beach", "standing in morning frost"]),
    ("a family of ducks", ["swimming in a canal", "waddling across a lawn", "resting on a riverbank"]),
    (
        "a young deer",
        ["standing in a forest clearing", "drinking from a stream", "looking up from tall grass"],
    ),
    ("a fluffy white rabbit", ["nibbling clover", "hopping through a garden", "sitting in a straw basket"]),
    ("a pair of otters", ["floating on their backs", "playing on a riverbank", "sliding down a muddy bank"]),
    ("a barn owl", ["perched in a hayloft", "flying over a field at dusk", "sitting on an old gate"]),
    ("a flock of sheep", ["crossing a country road", "grazing on a hillside", "huddled under a tree"]),
    ("a tiny hedgehog", ["walking through fallen leaves", "sniffing a mushroom", "curled up in a garden"]),
    ("a green parrot", ["perched on a branch", "eating a slice of mango", "spreading its wings"]),
    ("a brown bear", ["catching salmon in a river", "standing in a meadow", "walking along a lakeshore"]),
    ("a dachshund puppy", ["chasing a ball", "wrapped in a blanket", "running across a lawn"]),
    ("a humpback whale", ["breaching near a boat", "diving under the waves", "swimming with its calf"]),
    ("a heron", ["standing in shallow water", "taking off from a marsh", "fishing in a pond"]),
    ("a ginger kitten", ["playing with yarn", "sleeping in a flower pot", "climbing a curtain"]),
    ("a donkey", ["standing in a sunny paddock", "carrying baskets up a hill", "eating hay in a stable"]),
    ("a red squirrel", ["leaping between branches", "burying a nut", "sitting on a tree stump"]),
    ("a pod of dolphins", ["racing alongside a ferry", "jumping in a blue bay", "swimming near a reef"]),
    ("a border collie", ["herding ducks", "waiting by a farm gate", "jumping over a hurdle"]),
]

ANIMAL_CONDITIONS = _lines(
    """
at sunrise
at dusk
in soft evening light
on a bright morning
under an overcast sky
in the late afternoon sun
"""
)

FOODS = _lines(
    """
a bowl of pho with fresh herbs
a plate of spaghetti with tomato sauce
a slice of apple pie with vanilla ice cream
a breakfast of eggs, toast and avocado
a tray of homemade cookies
a basket of warm bread rolls
a bowl of Greek salad
a plate of grilled vegetables
a jar of honey with a wooden dipper
a bowl of mixed berries and yogurt
a plate of tacos with lime wedges
a pot of vegetable curry
a stack of waffles with whipped cream
a bowl of porridge with sliced banana
a plate of fish and chips
a platter of fresh oysters on ice
a bowl of popcorn
a glass of iced coffee
a pitcher of lemonade with mint
a tray of dim sum
"""
)

FOOD_SETTINGS = _lines(
    """
on a rustic wooden table
on a marble countertop
next to a window with morning light
on a picnic blanket
on a café table by the street
on a checkered tablecloth
beside a vase of wildflowers
on a kitchen counter with scattered flour
on a balcony table at sunset
on a tray in bed
"""
)

PLACES = _lines(
    """
a quiet fishing village
a narrow mountain pass
a sunlit vineyard
a busy harbor
a small train station
an old stone bridge
a sandy cove
a pine forest
a desert oasis
a flower meadow
a canal lined with houseboats
a coastal cliff path
a lakeside boathouse
a hilltop monastery
a tea plantation
a city rooftop garden
a snowy ski village
a tulip field
a red rock canyon
an island lighthouse
"""
)

PLACE_CONDITIONS = _lines(
    """
at sunrise
under a heavy grey sky
after a summer storm
in thick morning fog
on a clear winter day
at golden hour
under a full moon
in light drizzle
on a windy autumn afternoon
during the first snowfall
"""
)

VEHICLES: list[tuple[str, list[str]]] = [
    (
        "a vintage red pickup truck",
        ["parked beside a field of sunflowers", "on a dirt road", "outside a barn"],
    ),
    ("a blue city tram", ["crossing a stone bridge", "stopped at a busy square", "turning past a café"]),
    ("a wooden rowing boat", ["tied to a jetty", "drifting on a still lake", "pulled up on a pebble beach"]),
    ("a yellow school bus", ["waiting at a level crossing", "parked outside a library", "on a country lane"]),
    ("a sleek electric car", ["charging in a parking garage", "on a coastal road", "reflected in a puddle"]),
    (
        "a green vintage scooter",
        ["parked on a cobbled street", "in front of a bakery", "beside a flower stall"],
    ),
    (
        "a long freight train",
        ["passing through a snowy forest", "crossing a prairie", "winding along a river"],
    ),
    ("a white sailing yacht", ["anchored in a quiet cove", "leaving a marina", "heeling in a stiff breeze"]),
    (
        "a delivery van",
        ["stopped in front of a bakery", "parked on a narrow street", "loading at a warehouse"],
    ),
    ("a fire engine", ["parked outside the station", "at a village fête", "being washed by its crew"]),
    ("a small seaplane", ["landing on a mountain lake", "moored at a wooden dock", "flying over an island"]),
    (
        "a touring motorcycle",
        ["lined up at a ferry terminal", "parked at a mountain pass", "outside a roadside diner"],
    ),
]

OBJECTS = _lines(
    """
an old leather suitcase
a brass desk lamp
a bowl of green apples
a wooden rocking chair
a ceramic vase with dried flowers
a stack of vinyl records
a vintage film camera
a wicker basket of firewood
a copper kettle
a pair of red sneakers
a handwritten recipe card
an hourglass
a globe on a wooden stand
a hand-knitted scarf
a jar of colored buttons
"""
)

OBJECT_SETTINGS = _lines(
    """
on a windowsill in soft light
on a cluttered workbench
in the corner of a sunny room
on an antique dresser
on a shelf beside potted plants
on a bedside table
on the floor of an attic
on a table at a flea market
"""
)

INTERIORS = _lines(
    """
a small studio apartment
a farmhouse kitchen
a university library
a children's playroom
a hotel breakfast room
a bike repair shop
a quiet hospital waiting room
a music practice room
a seaside café
a log cabin
a hair salon
a corner grocery store
"""
)

INTERIOR_DETAILS = _lines(
    """
with plants hanging from the ceiling
with sunlight falling across the floor
decorated with string lights
with a large window overlooking the rain
with rows of shelves and a worn rug
painted in soft pastel colors
"""
)

SPORTS = _lines(
    """
a volleyball match
a rowing race
a cross-country ski race
a rugby match
a youth football game
a cycling time trial
a kite-surfing competition
a table tennis tournament
a horse show
a local cricket match
"""
)

SPORT_SETTINGS = _lines(
    """
on a sunny beach
under stadium lights
in a small town
on a muddy field
in front of a cheering crowd
on a frozen lake
in a school gym
at a seaside park
"""
)

# --------------------------------------------------------------------------------------------------------
# Parts for composed text-to-image prompts
# --------------------------------------------------------------------------------------------------------

T2I_SUBJECTS = _lines(
    """
a lighthouse on a rocky cliff
an old fisherman mending nets
a fox sleeping in a snowy forest
a tea house in a bamboo grove
a girl holding a paper lantern
a Victorian greenhouse full of orchids
a caravan of camels crossing dunes
a stone bridge over a misty river
a portrait of an elderly baker
a cat sitting on a stack of books
a busy street market in Marrakech
a sailboat in a quiet bay
a castle on a lake
a cozy mountain cabin
a field of poppies
a steam train crossing a viaduct
a koi fish in a clear pond
a village church in the snow
a hummingbird among fuchsia flowers
a wooden pier at the end of summer
a violinist in an empty concert hall
a bowl of peaches on a windowsill
a giant tree with a spiral staircase
a red tram on a hill
a herd of wild horses
an observatory under the stars
a flower shop on a rainy street
a knight resting under an oak tree
a farmhouse in a wheat field
an old map-maker at his desk
a girl riding a bicycle through lavender fields
a mountain monastery in the clouds
a jazz trio in a smoky lounge
a whale swimming through clouds
a market boat loaded with fruit
a snow-covered Japanese garden
a lonely gas station in the desert
a city rooftop with pigeons
a pastry shop window at Christmas
a bear fishing in a waterfall
a lantern festival on a river
a grandmother baking bread
a sunken ship on the sea floor
an astronaut tending a garden
a clockmaker's workshop
a dragonfly on a reed
a library inside a giant seashell
a Venetian mask on velvet
a sunflower facing the sun
a tiny village inside a glass bottle
a row of colorful houses along a harbor
a young monk sweeping temple steps
a greenhouse cafe with hanging ferns
a pair of foxes in a birch forest
a bakery at dawn with warm windows
a train conductor on an empty platform
a field of tulips with a windmill
a woman reading under a parasol
a polar research station in a blizzard
a flock of flamingos in a lagoon
a snowy mountain hut with smoke from the chimney
a boy sailing a paper boat in a puddle
a fisherman's cottage on a stormy coast
a hot spring in a snowy valley
a painter on a bridge in Paris
a heron standing in a misty marsh
a lavender farm in Provence
an old bookshop with a ladder
a carousel at a seaside fair
a bowl of ramen in a tiny diner
a wooden sailing ship in a harbor
a grandfather fixing a clock
a butterfly garden in summer
a Roman aqueduct at dusk
a treehouse village in a rainforest
a cozy kitchen with copper pans
a mountain goat on a cliff
a lone cyclist on a country road
a woman selling flowers at a market
a moonlit desert with a single tent
an owl in an old barn
a city park in autumn
a pair of ballet dancers rehearsing
a fishing boat returning at dusk
a winter forest with a deer
an orange grove in Seville
a street musician under a lamp post
a sleepy fox cub in tall grass
a Nordic stave church
a desert canyon with a river
a cabin on stilts over a lake
a chef tasting soup
a marketplace in ancient Rome
a garden gnome in the rain
a snowy train station at night
a sea otter holding a shell
a cottage with a thatched roof
a lighthouse keeper's daughter on the rocks
"""
)

T2I_MEDIA = _lines(
    """
oil painting
watercolor
digital painting
35mm film photograph
charcoal drawing
ink and wash
gouache illustration
3d render
pastel drawing
ukiyo-e woodblock print
linocut print
concept art
children's book illustration
pencil sketch
acrylic on canvas
isometric illustration
vintage postcard
"""
)

T2I_LIGHT = _lines(
    """
golden hour
soft morning light
blue hour
dramatic chiaroscuro
volumetric light
overcast diffuse light
candlelight
moonlight
backlit
rim lighting
neon glow
warm afternoon sun
"""
)

T2I_QUALITY = _lines(
    """
highly detailed
8k
sharp focus
intricate details
award-winning
masterpiece
ultra realistic
trending on artstation
cinematic composition
hdr
fine texture
"""
)

T2I_CAMERA = _lines(
    """
35mm
85mm portrait lens
wide angle
shallow depth of field
aerial view
close-up
bokeh
tilt-shift
long exposure
low angle shot
"""
)

T2I_MOOD = _lines(
    """
serene
whimsical
nostalgic
melancholic
peaceful
dreamy
cozy
majestic
mysterious
joyful
"""
)

T2I_ARTISTS = _lines(
    """
in the style of Claude Monet
in the style of Vincent van Gogh
in the style of Johannes Vermeer
in the style of Katsushika Hokusai
in the style of Alphonse Mucha
in the style of J. M. W. Turner
in the style of Rembrandt
in the style of John Singer Sargent
in the style of Edward Hopper
in the style of Utagawa Hiroshige
in the style of Gustav Klimt
in the style of Winslow Homer
in the style of Caspar David Friedrich
in the style of Albert Bierstadt
in the manner of the Dutch Golden Age masters
in the manner of the Pre-Raphaelites
in the manner of a Renaissance fresco
inspired by Art Nouveau posters
inspired by Soviet-era animation
inspired by 1950s travel posters
inspired by Studio Ghibli backgrounds
inspired by medieval illuminated manuscripts
"""
)

# --------------------------------------------------------------------------------------------------------
# Parts for composed sensitive-topic prompts
# --------------------------------------------------------------------------------------------------------

# Topics are split so that each is only framed in ways that suit it (a museum exhibit suits a war, a
# clinic pamphlet suits first aid).
HISTORY_TOPICS = _lines(
    """
the history of the Red Cross
the causes of the First World War
the Nuremberg trials
the abolition of slavery
the civil rights movement
the 1918 influenza pandemic
the fall of the Berlin Wall
the history of policing
the Roman legions
medieval siege warfare
the history of surgery
the history of tattooing
the samurai of feudal Japan
the Battle of Gettysburg
the Trojan War in Greek vase painting
Renaissance anatomical drawings
the history of censorship
the Holocaust and its survivors
the end of apartheid
the Cuban Missile Crisis
the history of nursing
the Battle of Thermopylae
the history of the atomic bomb
the history of capital punishment debates
the history of the police sketch artist
the war poets of 1914 to 1918
the plague in medieval Europe
the history of vaccination
the history of protest songs
the women codebreakers of Bletchley Park
the Napoleonic Wars
the history of firefighting
the Spanish Civil War in art
the history of forensic fingerprinting
the history of the Olympic Games
the history of asylums and psychiatric reform
the Battle of Agincourt
the history of the guillotine in the French Revolution
the siege of Leningrad
the Underground Railroad
the suffrage movement
the history of blood transfusion
the Chernobyl evacuation
the history of the stethoscope
the history of the United Nations refugee agency
the D-Day landings
the history of medieval armor
the ancient Spartans
the history of prisons and prison reform
the history of the anti-war movement
the partition of India in 1947
the Korean War armistice
the Crusades
the history of gun control debates
"""
)

PRACTICAL_TOPICS = _lines(
    """
how vaccines train the immune system
the steps of a criminal trial
wildfire evacuation planning
antibiotic resistance
workplace safety regulations
the bones of the human skeleton
road safety for cyclists
how juries are selected
the work of forensic scientists
mental health awareness
suicide prevention and crisis lines
recovery from addiction
preventing workplace harassment
recognizing the signs of a stroke
refugee resettlement
the Geneva Conventions
organ donation
the ethics of journalism
fraud prevention for older adults
earthquake preparedness
first aid for burns
water safety for families
hate crime laws
interfaith dialogue
how courts protect witnesses
the rights of people under arrest
the treatment of snake bites
disaster relief logistics
the anatomy of the human heart
cyberbullying and how to respond
how customs officers detect smuggling
bystander intervention training
how the body heals a broken bone
landmine clearance
the International Criminal Court
drowning prevention
consent and healthy relationships
the role of a public defender
the effects of alcohol on the body
sexual health education for adults
the dangers of carbon monoxide
how detectives interview witnesses
the science of concussions in contact sports
how paramedics triage patients
safe medicine storage at home
dealing with online scams
"""
)

GENERIC_FRAMES = _lines(
    """
A documentary still from a film about {t}.
A lecture on {t}, slides projected on a whiteboard.
An illustrated textbook page on {t}.
A newspaper feature on {t}, with a black-and-white photo above the text.
An infographic on {t} with simple icons.
A librarian arranges books on {t} on a display table.
A panel of experts discusses {t} at a public forum.
Two podcast hosts talk about {t} in a small studio.
A university seminar on {t}, students taking notes.
A poster for a community talk on {t}.
A public television program about {t}.
A teacher writes notes about {t} on a chalkboard.
An evening class on {t} at a community college.
A journalist researches {t} in a newspaper archive.
A graduate student presents a poster on {t} at a conference.
A wall display about {t} in a public library lobby.
A radio interview with an expert on {t}.
A documentary crew films a segment on {t} in a small town.
An online course module about {t} shown on a laptop screen.
A lecture hall where a guest speaker talks about {t}.
A report on {t} lies open on a desk beside a cup of tea.
A reading group discusses a book about {t} in a living room.
"""
)

HISTORY_FRAMES = _lines(
    """
A museum exhibit on {t}, with glass cases and printed captions.
A museum audio guide describes {t} to a visitor with headphones.
An encyclopedia opened to an entry on {t}.
A documentary narrator stands at a historic site while explaining {t}.
A historian gives a talk on {t} at a local museum.
A timeline of {t} printed on a classroom wall.
An archive box of letters and photographs about {t}.
"""
)

PRACTICAL_FRAMES = _lines(
    """
A pamphlet on {t} in a clinic waiting room.
A volunteer hands out leaflets about {t} at a town fair.
A community center hosts a workshop on {t} for local residents.
A training video about {t} plays on a screen in a staff room.
A public service poster about {t} on a bus shelter.
A trainer explains {t} to a room of volunteers.
A checklist on {t} pinned to an office noticeboard.
"""
)


# --------------------------------------------------------------------------------------------------------
# Composition
# --------------------------------------------------------------------------------------------------------


def _sentence(text: str) -> str:
    return text[0].upper() + text[1:] + "."


def _compose_captions(rng: random.Random) -> list[str]:
    out = []
    for person in PEOPLE:
        for action, places in PEOPLE_SCENES:
            out.append(_sentence(f"{person} {action} {rng.choice(places)}"))
    for animal, actions in ANIMALS:
        for action in actions:
            for condition in rng.sample(ANIMAL_CONDITIONS, 3):
                out.append(_sentence(f"{animal} {action} {condition}"))
    for food in FOODS:
        for setting in rng.sample(FOOD_SETTINGS, 4):
            out.append(_sentence(f"{food} {setting}"))
    for place in PLACES:
        for condition in rng.sample(PLACE_CONDITIONS, 4):
            out.append(_sentence(f"{place} {condition}"))
    for vehicle, scenes in VEHICLES:
        for scene in scenes:
            out.append(_sentence(f"{vehicle} {scene}"))
    for obj in OBJECTS:
        for setting in rng.sample(OBJECT_SETTINGS, 3):
            out.append(_sentence(f"{obj} {setting}"))
    for room in INTERIORS:
        for detail in rng.sample(INTERIOR_DETAILS, 3):
            out.append(_sentence(f"the inside of {room} {detail}"))
    for sport in SPORTS:
        for setting in rng.sample(SPORT_SETTINGS, 3):
            out.append(_sentence(f"{sport} {setting}"))
    return out


def _compose_t2i(rng: random.Random) -> list[str]:
    out = []
    for subject in T2I_SUBJECTS:
        for medium in rng.sample(T2I_MEDIA, 7):
            tags = [rng.choice(T2I_LIGHT), rng.choice(T2I_MOOD)]
            tags += rng.sample(T2I_QUALITY, rng.randint(1, 2))
            if medium.endswith("photograph"):
                tags.append(rng.choice(T2I_CAMERA))
            elif rng.random() < 0.45:
                tags.append(rng.choice(T2I_ARTISTS))
            rng.shuffle(tags)
            out.append(", ".join([f"{subject}, {medium}", *tags]))
    return out


def _compose_sensitive(rng: random.Random) -> list[str]:
    out = []
    for topics, frames in ((HISTORY_TOPICS, HISTORY_FRAMES), (PRACTICAL_TOPICS, PRACTICAL_FRAMES)):
        for topic in topics:
            for frame in rng.sample(GENERIC_FRAMES + frames, 8):
                out.append(frame.format(t=topic))
    return out


_WORD = re.compile(r"[a-z0-9']+")


def normalize(text: str) -> str:
    """Lower-case, drop punctuation, collapse spaces: the key under which two anchors count as equal."""
    return " ".join(_WORD.findall(text.lower()))


# Words that say nothing about the scene: left out of the near-duplicate test so that two prompts built
# on the same frame ("A poster for a talk on {topic}.") count as different when their topics differ.
_STOP_WORDS_TEXT = """
a an the of in on at by for with and or to from into onto over under near beside along across
through after before during its his her their two is are as about
"""
_STOP_WORDS = frozenset(_STOP_WORDS_TEXT.split())


def content_words(text: str) -> frozenset[str]:
    """The set of non-stop words of ``text``, lower-cased: what the near-duplicate test compares."""
    return frozenset(w for w in _WORD.findall(text.lower()) if w not in _STOP_WORDS)


def _jaccard(a: frozenset[str], b: frozenset[str]) -> float:
    return len(a & b) / len(a | b)


def build() -> list[tuple[str, str]]:
    """Return ``(kind, prompt)`` for every anchor, in the order written to the file.

    Hand-written prompts are always kept; composed ones are visited in a seeded random order and kept
    when they are not near-duplicates of anything kept so far, up to ``COMPOSED_QUOTA`` per kind.
    """
    rng = random.Random(SEED)
    hand = [("caption", p) for p in CAPTIONS]
    hand += [("t2i", p) for p in T2I_PROMPTS]
    hand += [("sensitive", p) for p in SENSITIVE]
    seen = set()
    for _, prompt in hand:
        key = normalize(prompt)
        if key in seen:
            raise ValueError(f"hand-written anchor appears twice: {prompt!r}")
        seen.add(key)

    composed = {
        "caption": _compose_captions(rng),
        "t2i": _compose_t2i(rng),
        "sensitive": _compose_sensitive(rng),
    }
    kept: list[tuple[str, str]] = []
    # Only compare against prompts that share a content word with the candidate (an inverted index): the
    # others have similarity 0, so this is exact, and it keeps the build well under a second.
    index: dict[str, list[frozenset[str]]] = {}

    def is_near_duplicate(words: frozenset[str]) -> bool:
        checked = set()
        for word in words:
            for other in index.get(word, ()):
                if id(other) in checked:
                    continue
                checked.add(id(other))
                if _jaccard(words, other) >= NEAR_DUPLICATE_JACCARD:
                    return True
        return False

    def add(words: frozenset[str]) -> None:
        for word in words:
            index.setdefault(word, []).append(words)

    for _, prompt in hand:
        add(content_words(prompt))
    for kind, candidates in composed.items():
        rng.shuffle(candidates)
        count = 0
        for prompt in candidates:
            if count == COMPOSED_QUOTA[kind]:
                break
            key, words = normalize(prompt), content_words(prompt)
            if key in seen or is_near_duplicate(words):
                continue
            seen.add(key)
            add(words)
            kept.append((kind, prompt))
            count += 1
    everything = hand + kept
    rng.shuffle(everything)
    return everything


def main(argv: list[str] | None = None) -> int:
    anchors = build()
    text = "\n".join(prompt for _, prompt in anchors) + "\n"
    OUTPUT.write_text(text, encoding="utf-8")
    hand = len(CAPTIONS) + len(T2I_PROMPTS) + len(SENSITIVE)
    by_kind: dict[str, int] = {}
    for kind, _ in anchors:
        by_kind[kind] = by_kind.get(kind, 0) + 1
    print(f"wrote {len(anchors)} anchors to {OUTPUT} ({hand} hand-written); by kind: {by_kind}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
