"""Data sources: any supported layout read into one manifest (one row per image), by
:func:`melanoma_mlops.data.sources.reader.load_source`.

Layouts (detected automatically, or forced with ``layout=``):

``folder``
    ``benign/`` and ``malignant/`` class folders (any case), optionally inside ``train/``, ``test/``,
    ``val/`` ... as in Kaggle exports. Those source splits are merged (kept in ``source_split``)
    because we re-split by group: the exports' splits are not grouped by lesion. ``masks/<class>/``
    beside the class folders fills ``mask_uri``.
``manifest``
    A CSV ``image_path,label[,group]`` (optional ``patient_id``, ``lesion_id``, ``mask_path``);
    paths relative to the CSV's folder, absolute, or ``s3://``; label 0/1 or benign/malignant.
``isic``
    An ISIC Archive export: ``metadata.csv`` (``isic_id``, ``diagnosis_1``, ``lesion_id``,
    ``patient_id`` ...) with ``<isic_id>.jpg`` beside it.
``isic2024``
    The ISIC 2024 challenge: ``train-metadata.csv`` (``isic_id``, ``target``, ``patient_id``,
    ``lesion_id`` ...) beside ``train-image.hdf5`` (JPEG bytes keyed by isic_id; images are read from
    it one at a time through ``hdf5://`` URIs, never unpacked).
``challenge``
    ISIC 2020 (``train.csv`` / ``ISIC_2020_Training_GroundTruth.csv``: ``image_name``,
    ``patient_id``, ``target``) or ISIC 2019 / 2018 (``ISIC_2019_Training_GroundTruth.csv``: ``image``
    + one-hot diagnosis columns, optional ``ISIC_2019_Training_Metadata.csv`` with ``lesion_id``).
``ham10000``, ``bcn20000``, ``pad-ufes-20``, ``ddi``, ``fitzpatrick17k``
    The public data sets as their publishers release them (HAM10000_metadata.csv,
    bcn_20k_train.csv, PAD-UFES-20 metadata.csv, ddi_metadata.csv, fitzpatrick17k.csv), each
    module citing where its header is documented. docs/data.md has the table.

Each layout maps its metadata onto the same subgroup columns (sex, age, anatom_site, skin_tone,
clinic: :mod:`.metadata`) and states its label policy (:mod:`.policy`).

Any of them may live under ``s3://bucket/prefix``: all access goes through :mod:`melanoma_mlops.storage`.
Each layout is one module of this package; :mod:`.layouts` is the one table that detection, CSV
lookup and loading all read; :mod:`.reader` opens the source and finishes the manifest. This
``__init__`` imports nothing, so the modules can name their siblings through the package.

Label policy: only values with a defined meaning are mapped to 0/1; everything else (ISIC
"Indeterminate", 2019 "UNK", actinic keratosis under ``--task malignant``, a stray text file in a
class folder) is *excluded and reported* in
``SourceResult.excluded`` with a reason, never folded into benign: an indeterminate lesion labelled
benign teaches the model that uncertain lesions are safe.

Groups: rows sharing a patient_id or a lesion_id are connected; a group is named after its patient
(``patient:<id>``) when any member has one, else its lesion (``lesion:<id>``), else ``group:<id>``
(manifest CSV), else ''. The duplicate audit later merges these with duplicate clusters.
"""
