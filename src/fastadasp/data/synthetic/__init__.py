"""Synthetic speech sets rendered locally (espeak-ng + sox): the demo sets and the sentence material.

No dataset can be downloaded on our machines, so the sets that real models are evaluated on here
are built from sentences written for this project (``sentences/``). Their scores measure how token
reduction changes a model's output on this speech, not a model's accuracy on natural speech.

``speech`` holds the tool commands, ``demo_sets`` the first sets and the builder that writes only
into folders it owns, ``clips`` the packing of sentences into dense clips (seeded pauses, noise at
an SNR), ``evaluation_sets`` the larger English, noisy, multilingual and language-ID sets."""
