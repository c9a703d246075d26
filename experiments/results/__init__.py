"""What regenerates the measured pages of docs/results/: the deeper models (``deeper``), the
labels lesson's tables (``labels``, after ``labels.sh``), and the K-sample estimators under
minibatches (``k_sample_minibatch``)."""
